//! Validated settings of one `xfer extract` run.
//!
//! [`Config::try_from`] turns [`ExtractArgs`] into values that cannot be
//! wrong any more (ripgrep's low/high args): a shard that exists, a positive
//! size and batch, folders that are folders. Later code takes only a
//! [`Config`], so it never re-checks a flag.
use std::path::PathBuf;

use crate::args::{AugmentArgs, ExtractArgs};
use crate::augment::Augment;
use crate::model::SessionOptions;
use crate::pixels::{Decode, Resize, MAX_SIDE as MAX_SIZE};
use crate::{Error, Result};

/// One deterministic share of the files: item `k` of a split belongs to
/// shard `k % count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    /// This share, from 0.
    pub(crate) index: usize,
    /// Number of shares.
    pub(crate) count: usize,
}

impl Shard {
    fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Flag {
            flag: "--shard",
            reason: format!("{s:?} {why} (write I/N with 0 <= I < N, e.g. 0/4)"),
        };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("is not I/N"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("has no index I"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("has no count N"))?;
        if count == 0 || index >= count {
            return Err(bad("is out of range"));
        }
        Ok(Shard { index, count })
    }

    /// Whether the `k`-th file of a split (flow order) is in this share.
    pub(crate) fn takes(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) data: PathBuf,
    pub(crate) model: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) size: u32,
    pub(crate) batch_size: usize,
    pub(crate) threads: usize,
    /// Whether decoding and inference take turns instead of overlapping
    /// (on the CPU provider). When ONNX Runtime's threads already fill
    /// every core (the default), decode threads running beside them
    /// preempt one of its threads and stall each parallel operator at its
    /// barrier; taking turns, each phase has every core and ORT's idle
    /// threads may spin. With a spare core (`--threads` below the core
    /// count) or on a GPU, decoding overlaps inference.
    pub(crate) alternate: bool,
    pub(crate) session: SessionOptions,
    pub(crate) shard: Option<Shard>,
    pub(crate) resize: Resize,
    pub(crate) decode: Decode,
    pub(crate) follow_links: bool,
    pub(crate) strict: bool,
    pub(crate) quiet: bool,
    pub(crate) max_pixels: u64,
    /// `--augment K` and its transform settings.
    pub(crate) augment: Option<Augment>,
}

impl TryFrom<ExtractArgs> for Config {
    type Error = Error;

    fn try_from(a: ExtractArgs) -> Result<Self> {
        let flag = |flag: &'static str, reason: String| Error::Flag { flag, reason };
        if !a.data.is_dir() {
            return Err(flag(
                "--data",
                format!("{} is not a folder", a.data.display()),
            ));
        }
        if !a.model.is_file() {
            return Err(flag(
                "--model",
                format!("{} is not a file", a.model.display()),
            ));
        }
        if a.out.exists() && !a.out.is_dir() {
            return Err(flag(
                "--out",
                format!("{} exists and is not a folder", a.out.display()),
            ));
        }
        if a.size == 0 || a.size > MAX_SIZE {
            return Err(flag(
                "--size",
                format!("{} is not in 1..={MAX_SIZE}", a.size),
            ));
        }
        if a.batch_size == 0 {
            return Err(flag("--batch-size", "must be at least 1".into()));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match a.threads {
            Some(0) => return Err(flag("--threads", "must be at least 1".into())),
            Some(t) => t,
            None => cores,
        };
        if a.max_pixels == 0 {
            return Err(flag("--max-pixels", "must be at least 1".into()));
        }
        let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
        let augment = augment(&a.augment)?;
        // ORT's threads spin only when decoding never runs beside them
        // (see `Config::alternate`).
        let alternate = threads >= cores;
        let session = SessionOptions {
            device: a.device,
            threads: Some(threads),
            spin: alternate,
        };
        Ok(Config {
            data: a.data,
            model: a.model,
            out: a.out,
            size: a.size,
            batch_size: a.batch_size,
            threads,
            alternate,
            session,
            shard,
            resize: a.resize,
            decode: a.decode,
            follow_links: a.follow_links,
            strict: a.strict,
            quiet: a.quiet,
            max_pixels: a.max_pixels,
            augment,
        })
    }
}

/// Largest accepted `--augment` (each view costs one more encoding of the
/// training split).
const MAX_VIEWS: u32 = 1000;

/// Checks the augmentation flags against Keras's own limits.
fn augment(a: &AugmentArgs) -> Result<Option<Augment>> {
    let Some(views) = a.augment else {
        return Ok(None);
    };
    let flag = |flag: &'static str, reason: String| Error::Flag { flag, reason };
    if views > MAX_VIEWS {
        return Err(flag(
            "--augment",
            format!("{views} is not in 0..={MAX_VIEWS}"),
        ));
    }
    let ranges = [
        ("--rotation", a.rotation, 360.0),
        ("--width-shift", a.width_shift, f64::MAX),
        ("--height-shift", a.height_shift, f64::MAX),
        ("--shear", a.shear, 360.0),
        ("--cval", a.cval, 255.0),
    ];
    for (name, v, max) in ranges {
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            return Err(flag(name, format!("{v} is not a number in [0, {max}]")));
        }
    }
    if !(a.zoom.is_finite() && (0.0..1.0).contains(&a.zoom)) {
        return Err(flag(
            "--zoom",
            format!(
                "{} is not in [0, 1) (zooms are drawn from [1 - Z, 1 + Z])",
                a.zoom
            ),
        ));
    }
    Ok(Some(Augment {
        views,
        seed: a.seed,
        rotation: a.rotation,
        width_shift: a.width_shift,
        height_shift: a.height_shift,
        shear: a.shear,
        zoom: a.zoom,
        horizontal_flip: !a.no_horizontal_flip,
        vertical_flip: a.vertical_flip,
        fill: a.fill_mode,
        cval: a.cval,
    }))
}

impl Config {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;

    fn args(dir: &std::path::Path) -> ExtractArgs {
        let model = dir.join("m.onnx");
        std::fs::write(&model, b"x").unwrap();
        ExtractArgs {
            data: dir.into(),
            model,
            out: dir.join("out"),
            size: 150,
            batch_size: 32,
            device: Device::Cpu,
            threads: None,
            shard: None,
            resize: Resize::Nearest,
            decode: Decode::Full,
            follow_links: false,
            strict: false,
            quiet: false,
            max_pixels: 10,
            augment: Default::default(),
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--shard"), "{e}");
        }
        let s = Shard::parse("2/3").unwrap();
        assert_eq!(
            (0..9).filter(|&k| s.takes(k)).collect::<Vec<_>>(),
            [2, 5, 8]
        );
    }

    #[test]
    fn augmentation_flags_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Config::try_from(args(dir.path())).unwrap().augment, None);
        let mut a = args(dir.path());
        a.augment.augment = Some(3);
        let aug = Config::try_from(a).unwrap().augment.unwrap();
        assert_eq!((aug.views, aug.shear, aug.zoom), (3, 10.0, 0.1));
        assert!(aug.horizontal_flip && !aug.vertical_flip);
        for (name, set) in [
            (
                "--zoom",
                (|a: &mut AugmentArgs| a.zoom = 1.0) as fn(&mut AugmentArgs),
            ),
            ("--zoom", |a| a.zoom = f64::NAN),
            ("--rotation", |a| a.rotation = -1.0),
            ("--shear", |a| a.shear = f64::INFINITY),
            ("--width-shift", |a| a.width_shift = -0.1),
            ("--augment", |a| a.augment = Some(1001)),
        ] {
            let mut a = args(dir.path());
            a.augment.augment = Some(2);
            set(&mut a.augment);
            let e = Config::try_from(a).unwrap_err().to_string();
            assert!(e.starts_with(name), "{e}");
        }
        let mut a = args(dir.path());
        a.augment.augment = Some(1);
        a.augment.no_horizontal_flip = true;
        assert!(
            !Config::try_from(a)
                .unwrap()
                .augment
                .unwrap()
                .horizontal_flip
        );
    }

    #[test]
    fn flags_are_checked_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Config::try_from(args(dir.path())).is_ok());
        let mut a = args(dir.path());
        a.size = 0;
        assert!(Config::try_from(a)
            .unwrap_err()
            .to_string()
            .starts_with("--size"));
        let mut a = args(dir.path());
        a.batch_size = 0;
        assert!(Config::try_from(a)
            .unwrap_err()
            .to_string()
            .starts_with("--batch-size"));
        let mut a = args(dir.path());
        a.threads = Some(0);
        assert!(Config::try_from(a)
            .unwrap_err()
            .to_string()
            .starts_with("--threads"));
        let mut a = args(dir.path());
        a.data = dir.path().join("missing");
        assert!(Config::try_from(a)
            .unwrap_err()
            .to_string()
            .starts_with("--data"));
        let mut a = args(dir.path());
        a.out = a.model.clone();
        assert!(Config::try_from(a)
            .unwrap_err()
            .to_string()
            .starts_with("--out"));
    }
}

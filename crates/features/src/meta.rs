//! File-level metadata: which model, size and preprocessing made the vectors.
//!
//! A vector is only comparable with vectors from the same model at the same
//! input size and preprocessing, so these facts travel inside every feature
//! file (Parquet key-value metadata, all strings) and later inside every head
//! file. Readers compare them with [`FeatureMeta::model_key`] instead of
//! trusting file names.
use std::collections::BTreeMap;

/// Version of the layout written by this crate (`xfer.schema_version`).
pub const SCHEMA_VERSION: &str = "1";

/// The metadata keys of the contract.
pub mod keys {
    /// JSON array of class names, sorted.
    pub const CLASSES: &str = "xfer.classes";
    /// Backbone name, e.g. `xception`.
    pub const BACKBONE: &str = "xfer.backbone";
    /// sha256 (hex) of the ONNX model file.
    pub const MODEL_SHA256: &str = "xfer.model_sha256";
    /// Input size as `WxH`, e.g. `150x150`.
    pub const SIZE: &str = "xfer.size";
    /// Resize filter, e.g. `nearest`.
    pub const RESIZE: &str = "xfer.resize";
    /// Preprocessing mode, e.g. `tf` (scale to [-1, 1]).
    pub const PREPROCESS: &str = "xfer.preprocess";
    /// Vector dimension.
    pub const DIM: &str = "xfer.dim";
    /// `true` when the base carries trained weights.
    pub const PRETRAINED: &str = "xfer.pretrained";
    /// Layout version, see [`super::SCHEMA_VERSION`].
    pub const SCHEMA_VERSION: &str = "xfer.schema_version";
    /// How the model was quantized (a JSON string written by
    /// `export_model.py quantize`); absent for a float model. Kept in
    /// [`super::FeatureMeta::extra`] and part of the model key.
    pub const QUANT: &str = "xfer.quant";
    /// How JPEG files were decoded: `draft` (libjpeg's DCT scaling, PIL's
    /// `Image.draft`) where `xfer extract --decode draft` made the vectors;
    /// absent for Keras's full decode ([`super::FULL_DECODE`]). Kept in
    /// [`super::FeatureMeta::extra`] and part of the model key.
    pub const DECODE: &str = "xfer.decode";
}

/// The value [`FeatureMeta::quant`] gives a file without `xfer.quant`: its
/// vectors come from a float (fp32) model.
pub const NOT_QUANTIZED: &str = "none (fp32)";

/// The value [`FeatureMeta::decode`] gives a file without `xfer.decode`:
/// every image was decoded at full size, as Keras's `load_img` does. It is
/// never written, so files made before the entry existed, and files made
/// without `--decode draft`, carry the same metadata.
pub const FULL_DECODE: &str = "full";

/// The `xfer.*` metadata of a feature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureMeta {
    /// Sorted class names; `label` indexes into this.
    pub classes: Vec<String>,
    /// Backbone name.
    pub backbone: String,
    /// sha256 (hex) of the ONNX model file.
    pub model_sha256: String,
    /// Input size, `WxH`.
    pub size: String,
    /// Resize filter name.
    pub resize: String,
    /// Preprocessing mode name.
    pub preprocess: String,
    /// Vector dimension.
    pub dim: usize,
    /// Whether the base is pretrained.
    pub pretrained: bool,
    /// Any further `xfer.*` entries (augmentation settings, say), kept as is.
    pub extra: BTreeMap<String, String>,
}

impl FeatureMeta {
    /// Metadata with the given classes and dimension and placeholder model
    /// facts (`unknown`), for tests and for callers that fill fields in.
    pub fn new(classes: Vec<String>, dim: usize) -> Self {
        FeatureMeta {
            classes,
            backbone: "unknown".into(),
            model_sha256: "unknown".into(),
            size: "0x0".into(),
            resize: "nearest".into(),
            preprocess: "none".into(),
            dim,
            pretrained: false,
            extra: BTreeMap::new(),
        }
    }

    /// `xfer.quant`, or [`NOT_QUANTIZED`] for vectors of a float model.
    pub fn quant(&self) -> &str {
        self.extra
            .get(keys::QUANT)
            .map_or(NOT_QUANTIZED, String::as_str)
    }

    /// `xfer.decode`, or [`FULL_DECODE`] for vectors of fully decoded images.
    pub fn decode(&self) -> &str {
        self.extra
            .get(keys::DECODE)
            .map_or(FULL_DECODE, String::as_str)
    }

    /// The entries that identify the vectors' origin: two files whose keys
    /// differ hold vectors that must never be mixed or fed to the same head.
    /// `xfer.quant` comes before the model's sha256 (which differs too) so
    /// that int8 against fp32 is what a message names.
    pub fn model_key(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::BACKBONE, self.backbone.clone()),
            (keys::QUANT, self.quant().to_string()),
            (keys::MODEL_SHA256, self.model_sha256.clone()),
            (keys::SIZE, self.size.clone()),
            (keys::RESIZE, self.resize.clone()),
            (keys::DECODE, self.decode().to_string()),
            (keys::PREPROCESS, self.preprocess.clone()),
            (keys::DIM, self.dim.to_string()),
        ]
    }

    /// All entries as strings, in a stable order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let classes = serde_json::to_string(&self.classes).expect("strings serialize");
        let mut out = vec![(keys::CLASSES.to_string(), classes)];
        // xfer.quant and xfer.decode are written from `extra`, where they
        // are, and only when set.
        out.extend(
            self.model_key()
                .into_iter()
                .filter(|(k, _)| *k != keys::QUANT && *k != keys::DECODE)
                .map(|(k, v)| (k.to_string(), v)),
        );
        out.push((keys::PRETRAINED.into(), self.pretrained.to_string()));
        out.push((keys::SCHEMA_VERSION.into(), SCHEMA_VERSION.into()));
        for (k, v) in &self.extra {
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// Parses the entries written by [`FeatureMeta::to_pairs`]. Errors name
    /// the missing or malformed key; the caller adds the file name.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> std::result::Result<Self, (String, String)> {
        let map: BTreeMap<&str, &str> = pairs.into_iter().collect();
        let get = |k: &str| -> std::result::Result<String, (String, String)> {
            map.get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| (k.to_string(), "missing".to_string()))
        };
        let classes: Vec<String> = serde_json::from_str(&get(keys::CLASSES)?).map_err(|e| {
            (
                keys::CLASSES.to_string(),
                format!("not a JSON array of strings: {e}"),
            )
        })?;
        let dim = get(keys::DIM)?
            .parse::<usize>()
            .map_err(|e| (keys::DIM.to_string(), e.to_string()))?;
        let pretrained = match get(keys::PRETRAINED)?.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err((
                    keys::PRETRAINED.into(),
                    format!("{other:?} is not true/false"),
                ))
            }
        };
        let known = [
            keys::CLASSES,
            keys::BACKBONE,
            keys::MODEL_SHA256,
            keys::SIZE,
            keys::RESIZE,
            keys::PREPROCESS,
            keys::DIM,
            keys::PRETRAINED,
            keys::SCHEMA_VERSION,
        ];
        // `xfer.decode=full` written by hand means what its absence means;
        // dropped, so such a file compares equal to the others everywhere.
        let extra = map
            .iter()
            .filter(|(k, _)| k.starts_with("xfer.") && !known.contains(k))
            .filter(|(k, v)| !(**k == keys::DECODE && **v == FULL_DECODE))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(FeatureMeta {
            classes,
            backbone: get(keys::BACKBONE)?,
            model_sha256: get(keys::MODEL_SHA256)?,
            size: get(keys::SIZE)?,
            resize: get(keys::RESIZE)?,
            preprocess: get(keys::PREPROCESS)?,
            dim,
            pretrained,
            extra,
        })
    }

    /// The first entry (key, self's value, other's value) where the two
    /// differ in classes or model key; `None` when compatible.
    pub fn first_difference(&self, other: &FeatureMeta) -> Option<(String, String, String)> {
        if self.classes != other.classes {
            return Some((
                keys::CLASSES.into(),
                serde_json::to_string(&self.classes).unwrap_or_default(),
                serde_json::to_string(&other.classes).unwrap_or_default(),
            ));
        }
        self.model_key()
            .into_iter()
            .zip(other.model_key())
            .find(|((_, a), (_, b))| a != b)
            .map(|((k, a), (_, b))| (k.to_string(), a, b))
    }

    /// [`FeatureMeta::first_difference`], and then any other `xfer.*` entry
    /// (augmentation settings, quantization): what pieces of one file, the
    /// shards of a split, must share.
    pub fn first_difference_all(&self, other: &FeatureMeta) -> Option<(String, String, String)> {
        self.first_difference(other).or_else(|| {
            let keys: std::collections::BTreeSet<&String> =
                self.extra.keys().chain(other.extra.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (a, b) = (self.extra.get(k), other.extra.get(k));
                (a != b).then(|| {
                    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
                    (k.clone(), show(a), show(b))
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn difference_with_extra_names_the_extra_key() {
        let a = FeatureMeta::new(vec!["x".into()], 3);
        let mut b = a.clone();
        b.extra
            .insert("xfer.augment".into(), "{\"zoom\":0.2}".into());
        assert!(a.first_difference(&b).is_none(), "model key only");
        assert_eq!(a.first_difference_all(&b).unwrap().0, "xfer.augment");
        assert!(b.first_difference_all(&b.clone()).is_none());
    }

    use super::*;

    /// [`FeatureMeta::from_pairs`] on owned pairs, which must parse.
    fn parse(pairs: &[(String, String)]) -> FeatureMeta {
        FeatureMeta::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap()
    }

    #[test]
    fn pairs_round_trip_keeps_extra_entries() {
        let mut m = FeatureMeta::new(vec!["a".into(), "b\"q".into()], 7);
        m.extra.insert("xfer.augment".into(), "{\"k\":2}".into());
        assert_eq!(parse(&m.to_pairs()), m);
    }

    #[test]
    fn missing_key_is_named() {
        let err = FeatureMeta::from_pairs([(keys::CLASSES, "[]")]).unwrap_err();
        assert_eq!(err.0, keys::DIM);
    }

    #[test]
    fn quant_is_part_of_the_model_key_and_named_before_the_sha256() {
        let fp32 = FeatureMeta::new(vec!["x".into()], 3);
        let mut int8 = fp32.clone();
        int8.model_sha256 = "other".into();
        int8.extra
            .insert(keys::QUANT.into(), "{\"type\":\"int8\"}".into());
        assert_eq!(fp32.quant(), NOT_QUANTIZED);
        let (key, a, b) = fp32.first_difference(&int8).unwrap();
        assert_eq!(
            (key.as_str(), a.as_str(), b.as_str()),
            (keys::QUANT, NOT_QUANTIZED, "{\"type\":\"int8\"}")
        );
        // Only the int8 file carries the entry, once; both round-trip.
        let pairs = int8.to_pairs();
        assert_eq!(pairs.iter().filter(|(k, _)| k == keys::QUANT).count(), 1);
        assert!(!fp32.to_pairs().iter().any(|(k, _)| k == keys::QUANT));
        for m in [&fp32, &int8] {
            assert_eq!(&parse(&m.to_pairs()), m);
        }
    }

    #[test]
    fn decode_is_part_of_the_model_key_and_absent_means_full() {
        let full = FeatureMeta::new(vec!["x".into()], 3);
        let mut draft = full.clone();
        draft.extra.insert(keys::DECODE.into(), "draft".into());
        assert_eq!((full.decode(), draft.decode()), (FULL_DECODE, "draft"));
        let (key, a, b) = full.first_difference(&draft).unwrap();
        assert_eq!(
            (key.as_str(), a.as_str(), b.as_str()),
            (keys::DECODE, FULL_DECODE, "draft")
        );
        // Only the draft file carries the entry; both round-trip.
        assert!(!full.to_pairs().iter().any(|(k, _)| k == keys::DECODE));
        for m in [&full, &draft] {
            assert_eq!(&parse(&m.to_pairs()), m);
        }
        // An explicit `full` reads as a file without the entry.
        let mut pairs = full.to_pairs();
        pairs.push((keys::DECODE.into(), FULL_DECODE.into()));
        let back = parse(&pairs);
        assert_eq!(back, full);
        assert!(back.first_difference_all(&full).is_none());
    }

    #[test]
    fn difference_names_the_key() {
        let a = FeatureMeta::new(vec!["x".into()], 3);
        let mut b = a.clone();
        b.size = "299x299".into();
        assert_eq!(a.first_difference(&b).unwrap().0, keys::SIZE);
        assert!(a.first_difference(&a).is_none());
    }
}

"""scripts/check_readme.py: which README commands it runs (nothing is run here).

Only blocks whose fence says `runnable` count; comments and blank lines are
dropped, continuation lines joined, list-item indentation removed; the
repository's own README must hold runnable commands that name no placeholder.
"""
import os
import sys
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

import check_readme  # noqa: E402

TEXT = """\
# Title

```
make features train          # not marked: left alone
```

```sh runnable
# a comment line
make features train BACKBONE=efficientnet-lite0   # trailing comment kept

xfer train --features f --out r \\
    --lr 0.1,0.2
```

- In a list:

  ```sh runnable
  xfer eval --features f --head r/head.safetensors
  ```

~~~sh runnable
echo "a ``` inside a tilde fence"
~~~

````markdown
```sh runnable
echo nested: not a block of its own
```
````

```python
print("runnable")
```
"""


class Extract(unittest.TestCase):
    def test_only_marked_blocks_in_order(self):
        self.assertEqual(check_readme.extract(TEXT), [
            (9, "make features train BACKBONE=efficientnet-lite0   # trailing comment kept"),
            (11, "xfer train --features f --out r --lr 0.1,0.2"),
            (18, "xfer eval --features f --head r/head.safetensors"),
            (22, 'echo "a ``` inside a tilde fence"'),
        ])

    def test_unclosed_block_keeps_its_commands(self):
        self.assertEqual(check_readme.extract("```sh runnable\nls \\\n  -l\n"),
                         [(2, "ls -l")])

    def test_word_runnable_must_be_a_word_of_the_info_string(self):
        self.assertEqual(check_readme.extract("```sh notrunnable\nls\n```\n"), [])

    def test_named_python_example(self):
        text = "```python\nx = 0\n```\n```python demo.py\nx = 1\ny = 2\n```\n"
        self.assertEqual(check_readme.example(text, "demo.py"), "x = 1\ny = 2\n")
        self.assertIsNone(check_readme.example(text, "other.py"))

    def test_the_readme_has_runnable_commands_without_placeholders(self):
        found = check_readme.commands(check_readme.DEFAULT_FILES)
        self.assertGreaterEqual(len(found), 8, found)
        for name, line, cmd in found:
            for placeholder in (" DATA ", "M.onnx", "photo.jpg", "[--", "I/N"):
                self.assertNotIn(placeholder, f" {cmd} ", f"{name}:{line}: {cmd}")


if __name__ == "__main__":
    unittest.main()

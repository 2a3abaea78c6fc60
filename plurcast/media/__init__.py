"""Images attached to posts: what a file is, what leaves the machine, where it is kept.

- `formats`: the type of an image from its first bytes (never its name), pure Python;
- `clean`: location and camera metadata taken out of the file's own bytes, losslessly,
  keeping the orientation (pure Python: no decoding, no re-encoding);
- `images`: decoding with Pillow (dimensions, truncation, re-encoding under a byte limit),
  imported only when a post has an image;
- `files`: the media store, `<data dir>/media/<sha256>`, where a queued post's images wait.
"""

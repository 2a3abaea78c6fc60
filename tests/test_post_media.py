"""plur-post's media flags at write time, and the media store's life: every refusal is one line
with nothing written; stored copies live exactly as long as a post or schedule needs them.

No network here: the posts are queued (or drafts), and deliveries are marked by the store.
Every test runs on SQLite (the images are files beside the database) and on PostgreSQL (rows
of `media`, and no file anywhere).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue, schedules
from plurcast.media import store as media_store
from tests.helpers import BASE_CONFIG, NOW, Clock, Run, media_stored
from tests.images import has_location, photo
from tests.peers.postgres import Backend, run_sql

pytestmark = pytest.mark.usefixtures("backend")

MEDIA_CONFIG = BASE_CONFIG.replace(
    'relays = ["ws://127.0.0.1:1"]\n',
    'relays = ["ws://127.0.0.1:1"]\nblossom_servers = ["http://127.0.0.1:2"]\n',
)


@pytest.fixture
def media_config(configured: Path) -> Callable[[str], Path]:
    """The usual config, Nostr with a Blossom server; `extra` TOML appended (its own tables)."""

    def write(extra: str = "") -> Path:
        configured.write_text(MEDIA_CONFIG + extra)
        return configured

    write()
    return write


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(photo("JPEG", (80, 60)))
    return path


def _media_dir(db_path: Path) -> Path:
    return db_path.parent / "media"


def _stored(db_path: Path) -> list[str]:
    return sorted(media_stored(db_path))


def _posts(db_path: Path) -> int:
    if not os.environ.get("PLURCAST_DATABASE_URL") and not db_path.exists():
        return 0
    return int(run_sql(db_path, "SELECT count(*) FROM posts")[0][0])


def _nothing_written(db_path: Path) -> bool:
    """No post, no stored image, no media directory (on PostgreSQL there is never one)."""
    return _posts(db_path) == 0 and _stored(db_path) == [] and not _media_dir(db_path).exists()


def _post_id(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout.strip().split(":")[1])


def _metadata(run: Run, post_id: str) -> dict[str, Any]:
    shown = run(queue_cli, "show", post_id, "-f", "json")
    metadata: dict[str, Any] = json.loads(shown.stdout)["metadata"]
    return metadata


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(200_000_000)  # sparse: 200 MB without writing them
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    pdf = tmp_path / "photo.jpg"
    pdf.write_bytes(b"%PDF-1.7\n" + bytes(300))
    cut = tmp_path / "cut.png"
    cut.write_bytes(photo("PNG", (200, 200))[:3000])
    return {"dir": tmp_path, "fifo": fifo, "huge": huge, "empty": empty, "pdf": pdf, "cut": cut}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--image", "{dir}"], 3, "Error: --image {dir} is a directory — give an image file"),
        (["--image", "{fifo}"], 3, "Error: --image {fifo} is not a regular file"),
        (["--image", "{empty}"], 3, "Error: --image {empty} is empty (0 bytes)"),
        (["--image", "{huge}"], 3, "Error: --image {huge} is 200,000,000 bytes, over the "),
        (["--image", "{pdf}"], 3, "Error: --image {pdf}: it is a PDF document — give a whole"),
        (["--image", "{cut}"], 3, "Error: --image {cut}: it is truncated"),
        (["--image", "{dir}/missing.png"], 3, "Error: --image {dir}/missing.png: no such file"),
        (["--alt", "lonely"], 3, "Error: --alt without an --image before it — write --image"),
        (["--alt", "a", "--image", "{jpeg}"], 3, "Error: --alt without an --image before it"),
        (["--image", "{jpeg}", "--alt", "a", "--alt", "b"], 3, "Error: two --alt for --image"),
        (["--image", "{jpeg}", "--alt", "x" * 10_000], 3,
         "Error: the alt text of image 1 is 10,000 characters, over nostr's limit of 5,000"),
        (["--image", "{jpeg}", "--alt", "bell\x07"], 3, "Error: the alt text of image 1 contains "),
        (["--image", "{jpeg}"] * 5, 3, "Error: 5 images, over the limit of 4 per post"),
        (["--lang", "xx-notreal"], 3, 'Error: "xx-notreal" is not a language tag'),
        (["--lang", "qq"], 3, 'Error: "qq": qq is not a known language code'),
        (["--lang", "en,de,fr,it"], 3, "Error: 4 languages, over the limit of 3 per post"),
        (["--cw", "  "], 3, "Error: --cw is empty"),
        (["--cw", "a\x1bb"], 3, "Error: --cw contains control characters"),
        (["--label", "spicy"], 3, "Error: Invalid value for '--label'"),
        (["--image", "{jpeg}", "-p", "bluesky", "--draft", "-s", "1h"], 3,
         "Error: --schedule and --draft cannot be used together"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_with_nothing_written(
    media_config: Callable[[str], Path],
    run: Run,
    clock: Clock,
    db_path: Path,
    tmp_path: Path,
    jpeg: Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    places = {name: str(path) for name, path in _bad_files(tmp_path).items()} | {"jpeg": str(jpeg)}
    result = run(post_cli, "Hello", "-s", "1h", *[a.format(**places) for a in args])
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(message.format(**places)), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert _nothing_written(db_path)


def test_a_nostr_post_with_images_needs_a_blossom_server(
    configured: Path, run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    result = run(post_cli, "x", "-s", "1h", "-p", "nostr", "--image", str(jpeg), "--alt", "a")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Nostr account default has no Blossom server for ")
    assert "blossom_servers" in result.stderr and result.stderr.count("\n") == 1
    assert _nothing_written(db_path)
    assert run(post_cli, "text only is fine", "-s", "1h", "-p", "nostr").exit_code == 0


@pytest.mark.usefixtures("media_config")
def test_each_alt_belongs_to_the_image_before_it(
    run: Run, clock: Clock, db_path: Path, tmp_path: Path, jpeg: Path, backend: Backend
) -> None:
    png = tmp_path / "chart.png"
    png.write_bytes(photo("PNG", (50, 40), orientation=1))
    result = run(post_cli, "Two pictures", "-s", "1h", "--image", str(jpeg),
                 "--image", str(png), "--alt", "A bar chart")  # fmt: skip
    post_id = _post_id(result)
    assert result.stderr == (
        f"Warning: image 1 ({jpeg}) has no alt text: people who use a screen reader will "
        "not know what it shows\n"
    )
    images = _metadata(run, post_id)["images"]
    assert [(i["name"], i["alt"], i["mime"]) for i in images] == [
        ("IMG_0001.jpg", "", "image/jpeg"),
        ("chart.png", "A bar chart", "image/png"),
    ]
    assert [(i["width"], i["height"]) for i in images] == [(60, 80), (50, 40)]
    # The stored copies: cleaned, private, and the post no longer needs the originals.
    stored = media_stored(db_path)
    assert sorted(stored) == sorted(i["sha256"] for i in images)
    for image in images:
        assert not has_location(stored[image["sha256"]])
        if not backend.is_postgresql:
            assert (_media_dir(db_path) / image["sha256"]).stat().st_mode & 0o777 == 0o600
    assert _media_dir(db_path).exists() != backend.is_postgresql
    jpeg.unlink()
    shown = run(queue_cli, "show", post_id).stdout
    assert "images:\n  1. IMG_0001.jpg: image/jpeg, " in shown
    assert "60×80\n     alt: (none)\n  2. chart.png: image/png, " in shown
    assert "     alt: A bar chart\n" in shown


@pytest.mark.usefixtures("media_config")
def test_keep_metadata_keeps_the_position(
    run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    post_id = _post_id(run(post_cli, "x", "-s", "1h", "--image", str(jpeg), "--alt", "a",
                           "--keep-metadata"))  # fmt: skip
    [image] = _metadata(run, post_id)["images"]
    assert has_location(media_stored(db_path)[image["sha256"]])
    assert image["kept_metadata"] is True  # what plur-export writes as keep_metadata


def test_require_alt_makes_a_missing_alt_an_error(
    media_config: Callable[[str], Path], run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    media_config().write_text(
        MEDIA_CONFIG.replace("[defaults]\n", "[defaults]\nrequire_alt = true\n")
    )
    result = run(post_cli, "x", "-s", "1h", "--image", str(jpeg))
    assert result.exit_code == 3
    assert result.stderr == (
        f"Error: image 1 ({jpeg}) has no alt text — add --alt TEXT after --image {jpeg}\n"
    )
    assert _nothing_written(db_path)


@pytest.mark.parametrize(
    ("section", "setting", "message"),
    [
        ("[defaults]", "require_alt = 1", "defaults.require_alt has the wrong type (int)"),
        ("[defaults]", 'language = "xx"', 'defaults.language: "xx": xx is not a known language'),
        ("[defaults]", 'language = ["en", 3]', "defaults.language must be a language tag"),
        ("[mastodon]", "max_image_bytes = 0", "mastodon.max_image_bytes must be a positive"),
        ("[bluesky]", 'cards_allow_private = "yes"', "cards_allow_private must be true or false"),
        ("[nostr]", 'blossom_servers = ["http://blossom.example"]', "uses plain http"),
        ("[nostr]", 'blossom_servers = "https://b.example"', "must be a list of URLs"),
    ],
)
def test_config_keys_are_checked(
    media_config: Callable[[str], Path], run: Run, section: str, setting: str, message: str
) -> None:
    text = MEDIA_CONFIG.replace('blossom_servers = ["http://127.0.0.1:2"]\n', "")
    media_config().write_text(text.replace(f"{section}\n", f"{section}\n{setting}\n"))
    result = run(post_cli, "x", "-s", "1h", "-p", "nostr,mastodon,bluesky")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_media_fit_must_be_true_or_false(media_config: Callable[[str], Path], run: Run) -> None:
    media_config("[media]\nfit = 1\n")
    result = run(post_cli, "x", "-s", "1h")
    assert result.exit_code == 2 and "media.fit has the wrong type (int)" in result.stderr


def test_language_defaults_and_the_flag_wins(
    media_config: Callable[[str], Path], run: Run, clock: Clock
) -> None:
    media_config().write_text(MEDIA_CONFIG.replace("[defaults]\n", '[defaults]\nlanguage = "de"\n'))
    assert _metadata(run, _post_id(run(post_cli, "Hallo", "-s", "1h")))["langs"] == ["de"]
    post_id = _post_id(run(post_cli, "Olá", "-s", "1h", "--lang", "pt-br", "--lang", "en"))
    assert _metadata(run, post_id)["langs"] == ["pt-BR", "en"]


def test_over_a_byte_limit_needs_fit_which_makes_a_copy_for_that_platform_only(
    media_config: Callable[[str], Path], run: Run, clock: Clock, db_path: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(photo("JPEG", (900, 600), smooth=True, quality=98))
    limit = big.stat().st_size // 2
    media_config().write_text(
        MEDIA_CONFIG.replace("[mastodon]\n", f"[mastodon]\nmax_image_bytes = {limit}\n")
    )
    refused = run(
        post_cli, "x", "-s", "1h", "-p", "nostr,mastodon", "--image", str(big), "--alt", "a"
    )
    assert refused.exit_code == 3
    assert f"over mastodon's limit of {limit:,} per image — add --fit" in refused.stderr
    assert _posts(db_path) == 0
    post_id = _post_id(run(post_cli, "x", "-s", "1h", "-p", "nostr,mastodon", "--image", str(big),
                           "--alt", "a", "--fit"))  # fmt: skip
    [image] = _metadata(run, post_id)["images"]
    fitted = image["fitted"]["mastodon"]
    assert set(image["fitted"]) == {"mastodon"} and fitted["size"] <= limit
    assert _stored(db_path) == sorted([image["sha256"], fitted["sha256"]])
    assert "     mastodon: re-encoded to " in run(queue_cli, "show", post_id).stdout
    media_config().write_text(
        MEDIA_CONFIG.replace("[mastodon]\n", f"[mastodon]\nmax_image_bytes = {limit}\n")
        + "[media]\nfit = true\n"
    )
    assert (
        run(
            post_cli, "x", "-s", "1h", "-p", "mastodon", "--image", str(big), "--alt", "a"
        ).exit_code
        == 0
    )
    assert run(post_cli, "x", "-s", "1h", "-p", "mastodon", "--image", str(big), "--alt", "a",
               "--no-fit").exit_code == 3  # fmt: skip


@pytest.mark.usefixtures("media_config")
def test_a_warning_counts_where_each_platform_counts_it(run: Run, clock: Clock) -> None:
    """Bluesky has no field for it: "CW: …" and a blank line go first and count in its 300.
    Mastodon counts its spoiler text in max_chars beside the text. Nostr's is a tag."""
    text = "x" * 290
    bluesky = run(post_cli, text, "-s", "1h", "-p", "bluesky", "--cw", "spoils")
    assert bluesky.exit_code == 3
    assert bluesky.stderr.startswith(
        "Error: content with its content warning is 302 characters, over bluesky's limit of "
        "300 (bluesky counts the warning first in the text, as CW: …)"
    )
    assert run(post_cli, text, "-s", "1h", "-p", "bluesky", "--cw", "spoil").exit_code == 3
    assert run(post_cli, text, "-s", "1h", "-p", "bluesky", "--cw", "ok").exit_code == 0
    long = "y" * 495
    mastodon = run(post_cli, long, "-s", "1h", "-p", "mastodon", "--cw", "sixsix")
    assert mastodon.exit_code == 3
    assert "501 characters, over mastodon's limit of 500 (mastodon counts the warning beside" in (
        mastodon.stderr
    )
    assert run(post_cli, long, "-s", "1h", "-p", "mastodon", "--cw", "five5").exit_code == 0
    assert run(post_cli, "z" * 65_000, "-s", "1h", "-p", "nostr", "--cw", "a" * 499).exit_code == 0


@pytest.mark.usefixtures("media_config")
def test_edit_changes_the_alt_texts_of_an_unsent_post(
    run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    post_id = _post_id(run(post_cli, "x", "-s", "1h", "--image", str(jpeg), "--image", str(jpeg)))
    result = run(queue_cli, "edit", post_id, "--alt", "2", "The same, again")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"edited:{post_id}\n"
    assert result.stderr.startswith("Warning: image 1 (IMG_0001.jpg) has no alt text")
    assert [i["alt"] for i in _metadata(run, post_id)["images"]] == ["", "The same, again"]
    assert run(queue_cli, "edit", post_id, "--alt", "1", "First").exit_code == 0
    shown = json.loads(run(queue_cli, "show", post_id, "-f", "json").stdout)
    assert shown["content"] == "x" and [i["alt"] for i in shown["metadata"]["images"]] == [
        "First",
        "The same, again",
    ]
    for args, message in (
        (["--alt", "3", "x"], f"Error: post {post_id} has 2 images; there is no image 3"),
        (["--alt", "one", "x"], 'Error: --alt "one": not an image number'),
        (["--alt", "1", "x" * 1600], "over mastodon's limit of 1,500"),
    ):
        refused = run(queue_cli, "edit", post_id, *args)
        assert refused.exit_code == 3 and message in refused.stderr, refused.stderr
    assert [i["alt"] for i in _metadata(run, post_id)["images"]] == ["First", "The same, again"]
    run_sql(db_path, "UPDATE deliveries SET state = 'sent'")
    refused = run(queue_cli, "edit", post_id, "--alt", "1", "Too late")
    assert refused.exit_code == 3 and "only posts not yet sent can be edited" in refused.stderr


@pytest.mark.usefixtures("media_config")
def test_a_copy_is_removed_once_no_post_needs_it(
    run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    first = _post_id(run(post_cli, "one", "-s", "1h", "--image", str(jpeg), "--alt", "a"))
    second = _post_id(run(post_cli, "two", "-s", "2h", "--image", str(jpeg), "--alt", "a"))
    [stored] = _stored(db_path)  # the same picture, kept once
    assert run(queue_cli, "cancel", first, "-f").exit_code == 0
    assert _stored(db_path) == [stored]  # the second post still needs it
    # The second gave up: it may still be retried.
    run_sql(db_path, "UPDATE deliveries SET state = 'dead', last_error = 'x' WHERE post_id = ?",
            second)  # fmt: skip
    assert run(queue_cli, "cancel", first, "-f").exit_code == 3
    assert _stored(db_path) == [stored]
    assert run(queue_cli, "failed", "delete", second).exit_code == 0
    assert _stored(db_path) == []


@pytest.mark.usefixtures("media_config")
def test_a_recurring_post_keeps_its_images_until_the_schedule_ends(
    run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    made = run(post_cli, "Daily kite", "--every", "1d", "--image", str(jpeg), "--alt", "Kite",
               "--cw", "birds", "-f", "json")  # fmt: skip
    assert made.exit_code == 0, made.output
    schedule = json.loads(made.stdout)
    jpeg.unlink()  # the schedule has its own copy
    [stored] = _stored(db_path)
    conn = queue.open_db(config_module.load())
    [post_id] = schedules.materialize(conn, int(NOW.timestamp() * 1000) + 86_400_000)
    metadata = _metadata(run, post_id)
    assert metadata["cw"] == "birds" and metadata["images"][0]["alt"] == "Kite"
    conn.execute("UPDATE deliveries SET state = 'sent' WHERE post_id = ?", (post_id,))
    media_store.for_database(conn).collect()
    assert _stored(db_path) == [stored]  # the schedule makes more posts with it
    assert run(queue_cli, "cancel", schedule["schedule_id"], "-f").exit_code == 0
    assert _stored(db_path) == []


@pytest.mark.usefixtures("media_config")
def test_a_thread_s_images_go_with_its_first_part_and_its_warning_with_every_part(
    run: Run, clock: Clock, db_path: Path, jpeg: Path
) -> None:
    made = run(post_cli, "First part\n---\nSecond part", "--thread", "-p", "mastodon,bluesky",
               "--image", str(jpeg), "--alt", "A kite", "--cw", "birds", "--lang", "en",
               "-s", "1h", "-f", "json")  # fmt: skip
    assert made.exit_code == 0, made.output
    first, second = (item["post_id"] for item in json.loads(made.stdout))
    one, two = _metadata(run, first), _metadata(run, second)
    assert [i["alt"] for i in one["images"]] == ["A kite"] and "images" not in two
    assert one["cw"] == two["cw"] == "birds" and one["langs"] == two["langs"] == ["en"]
    assert run_sql(db_path, "SELECT DISTINCT post_id FROM post_media") == [(first,)]


@pytest.mark.usefixtures("media_config")
def test_auto_thread_cuts_bluesky_parts_with_the_warning_counted(run: Run, clock: Clock) -> None:
    from plurcast.platforms import registry

    words = " ".join(f"word{n}" for n in range(120))  # ~ 900 characters
    made = run(post_cli, words, "--auto-thread", "-p", "bluesky", "--cw", "a long warning here",
               "-s", "1h", "-f", "json")  # fmt: skip
    assert made.exit_code == 0, made.output
    parts = [item["post_id"] for item in json.loads(made.stdout)]
    assert len(parts) >= 4
    bluesky = registry.get("bluesky")
    for post_id in parts:
        shown = json.loads(run(queue_cli, "show", post_id, "-f", "json").stdout)
        [delivery] = shown["deliveries"]
        text = delivery["content"] or shown["content"]
        sent = bluesky.as_sent(text, "a long warning here")
        assert sent.startswith("CW: a long warning here\n\n") and len(sent) <= 300, sent

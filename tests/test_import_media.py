"""plur-import and plur-export with images, alt texts, content warnings, labels, languages:
a row is checked as plur-post checks the same flags (the images read from paths relative to
the import file), its images stored inside the import's one transaction — and an export
with its images folder imports back into an empty database as the same posts, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_export import cli as export_cli
from plur_queue.plur_import import cli as import_cli
from tests.helpers import AnotherDatabase, Clock, Run, media_stored, rows_in
from tests.images import has_location, photo

pytestmark = pytest.mark.usefixtures("configured", "backend")


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """A folder with a GPS-tagged JPEG and a PNG, as a user keeps them beside a plan."""
    folder = tmp_path / "plan"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "kite.jpg").write_bytes(photo("JPEG", (80, 60)))
    (folder / "chart.png").write_bytes(photo("PNG", (50, 40), orientation=1))
    return folder


def _nothing_written(db_path: Path) -> bool:
    return rows_in(db_path, "posts") == 0 and media_stored(db_path) == {}


def _metadata(run: Run, post_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads(run(queue_cli, "show", post_id, "-f", "json").stdout)[
        "metadata"
    ]
    return metadata


def _imported_ids(result: Any) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [line.split(":")[1] for line in result.stdout.splitlines()]


def test_a_row_carries_what_plur_post_s_flags_carry(
    run: Run, clock: Clock, db_path: Path, pictures: Path
) -> None:
    plan = pictures / "plan.csv"
    plan.write_text(
        "content,schedule,platforms,images,alt,cw,label,lang,no_card\n"
        '"Kites, charts",2026-11-23 09:00,"mastodon,bluesky","photos/kite.jpg\nchart.png",'
        '"[""A red kite"", """"]",birds,graphic-media,"en,de",true\n'
    )
    result = run(import_cli, str(plan))
    [post_id] = _imported_ids(result)
    assert result.stderr.startswith(
        f"Warning: line 2: image 2 ({pictures / 'chart.png'}) has no alt text: people who use"
    )
    imported = _metadata(run, post_id)
    # The same post through plur-post's flags.
    made = run(post_cli, "Kites, charts", "-s", "2026-11-23 09:00", "-p", "mastodon,bluesky",
               "--image", str(pictures / "photos" / "kite.jpg"), "--alt", "A red kite",
               "--image", str(pictures / "chart.png"), "--cw", "birds", "--label",
               "graphic-media", "--lang", "en,de", "--no-card")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    written = _metadata(run, made.stdout.split(":")[1])
    assert imported == written
    assert [i["alt"] for i in imported["images"]] == ["A red kite", ""]
    assert imported["cw"] == "birds" and imported["langs"] == ["en", "de"]
    stored = media_stored(db_path)
    assert sorted(stored) == sorted(i["sha256"] for i in imported["images"])
    assert not any(has_location(data) for data in stored.values())


@pytest.mark.parametrize(
    ("images", "alt", "extra", "message"),
    [
        ("missing.jpg", "", "", "line 3: --image {folder}/missing.jpg: no such file"),
        ("photos", "", "", "line 3: --image {folder}/photos is a directory"),
        ("fake.jpg", "", "", "line 3: --image {folder}/fake.jpg: it is a PDF document"),
        ("fifo.jpg", "", "", "line 3: --image {folder}/fifo.jpg is not a regular file"),
        ("empty.jpg", "", "", "line 3: --image {folder}/empty.jpg is empty (0 bytes)"),
        ("huge.jpg", "", "", "line 3: --image {folder}/huge.jpg is 200,000,000 bytes, over"),
        ("", "Alone", "", "line 3: 1 alt text for 0 images"),
        ("chart.png", '"[""a"", ""b""]"', "", "line 3: 2 alt texts for 1 image —"),
        ("chart.png", "x" * 10_000, "",
         "line 3: the alt text of image 1 is 10,000 characters, over mastodon's limit of 1,500"),
        ("", "", "xx-notreal", 'line 3: "xx-notreal" is not a language tag'),
    ],
)  # fmt: skip
def test_bad_rows_are_listed_and_nothing_is_written(
    run: Run,
    clock: Clock,
    db_path: Path,
    pictures: Path,
    images: str,
    alt: str,
    extra: str,
    message: str,
) -> None:
    (pictures / "fake.jpg").write_bytes(b"%PDF-1.7\n" + bytes(300))
    os.mkfifo(pictures / "fifo.jpg")
    (pictures / "empty.jpg").write_bytes(b"")
    with (pictures / "huge.jpg").open("wb") as f:
        f.truncate(200_000_000)  # sparse: 200 MB without writing them
    plan = pictures / "plan.csv"
    plan.write_text(
        "content,schedule,platforms,images,alt,lang\n"
        "Fine,2026-11-23 09:00,mastodon,chart.png,A chart,\n"
        f"Bad,2026-11-24 09:00,mastodon,{images},{alt},{extra}\n"
    )
    result = run(import_cli, str(plan))
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("Error: " + message.format(folder=pictures)), result.stderr
    assert "1 problem found; nothing was imported" in result.stderr
    assert _nothing_written(db_path)


def test_a_bad_label_is_refused_by_name(
    run: Run, clock: Clock, db_path: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.jsonl"
    plan.write_text('{"content": "x", "schedule": "2026-11-23 09:00", "label": "spicy"}\n')
    result = run(import_cli, str(plan))
    assert result.exit_code == 3 and 'line 1: unknown label "spicy"' in result.stderr
    plan.write_text('{"content": "x", "schedule": "2026-11-23 09:00", "image_url": "https://x"}\n')
    result = run(import_cli, str(plan))
    assert result.exit_code == 3 and "images by URL cannot be imported" in result.stderr
    assert _nothing_written(db_path)


def test_a_dry_run_checks_the_images_and_stores_none(
    run: Run, clock: Clock, db_path: Path, pictures: Path
) -> None:
    plan = pictures / "plan.jsonl"
    plan.write_text(
        '{"content": "x", "schedule": "2026-11-23 09:00", "platforms": "mastodon", '
        '"images": [{"path": "chart.png", "alt": "A chart"}]}\n'
    )
    result = run(import_cli, str(plan), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("would-scheduled:line-1:")
    assert _nothing_written(db_path) and not (db_path.parent / "media").exists()
    [post_id] = _imported_ids(run(import_cli, str(plan)))
    [image] = _metadata(run, post_id)["images"]
    assert image["alt"] == "A chart" and list(media_stored(db_path)) == [image["sha256"]]


def _queue(run: Run) -> list[dict[str, Any]]:
    """Every post as plur-queue shows it, without what a copy makes anew (ids, times)."""
    listed = json.loads(run(queue_cli, "list", "--all", "-f", "json").stdout)
    shown = []
    for item in sorted(listed, key=lambda i: (i["scheduled_at"] or 2**50, i["content"])):
        post = json.loads(run(queue_cli, "show", item["id"], "-f", "json").stdout)
        for anew in ("id", "created_at", "created_at_iso", "thread_id", "previous_part"):
            post.pop(anew, None)
        if (post["thread_part"] or 1) > 1:
            post.pop("reply_to")  # the part before it, by id
        for delivery in post["deliveries"]:
            delivery.pop("parent_id", None)
        shown.append(post)
    return shown


@pytest.mark.parametrize("kind", ["jsonl", "csv", "md"])
def test_export_with_images_then_import_into_an_empty_database_is_the_same_queue(
    run: Run,
    clock: Clock,
    tmp_path: Path,
    db_path: Path,
    pictures: Path,
    another_database: AnotherDatabase,
    kind: str,
) -> None:
    kite, chart = str(pictures / "photos" / "kite.jpg"), str(pictures / "chart.png")
    for args in (
        ["Two pictures", "-s", "2026-11-23 09:00", "-p", "mastodon,bluesky", "--image", kite,
         "--alt", 'A kite, "red"\nover a field', "--image", chart, "--label", "nudity"],
        ["Warned\n---\nand threaded", "--thread", "-s", "2026-11-24 09:00", "--cw", "spoilers",
         "--lang", "pt-BR", "--image", chart, "--alt", "Bars", "-p", "mastodon"],
        ["A link https://example.com/x", "-s", "2026-11-25 09:00", "-p", "bluesky", "--no-card"],
        ["Plain", "--draft"],
        ["Where it flew", "-s", "2026-11-26 09:00", "-p", "mastodon", "--image", kite,
         "--alt", "The kite, with its place", "--keep-metadata"],
    ):  # fmt: skip
        assert run(post_cli, *args).exit_code == 0
    before = _queue(run)
    refused = run(export_cli)  # stdout has no folder for the images
    assert refused.exit_code == 3 and "3 posts have images" in refused.stderr
    out = tmp_path / "out" / f"plan.{kind}"
    out.parent.mkdir()
    exported = run(export_cli, "-o", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert exported.stderr == "exported 5 posts\n"
    files = sorted(p for p in (out.parent / "plan-images").rglob("*") if p.is_file())
    # The chart once; the kite cleaned, and as it was (--keep-metadata).
    assert sorted(p.name for p in files) == ["chart.png", "kite.jpg", "kite.jpg"]
    assert sorted(has_location(p.read_bytes()) for p in files) == [False, False, True]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    text, originals = out.read_text(), sorted(media_stored(db_path))
    with another_database() as copy:
        imported = run(import_cli, str(out))
        assert imported.exit_code == 0, imported.stderr
        assert _queue(run) == before
        assert sorted(media_stored(copy)) == originals  # the kept kite still has its place
        again = tmp_path / "again" / f"plan.{kind}"
        again.parent.mkdir()
        assert run(export_cli, "-o", str(again)).exit_code == 0
        assert again.read_text() == text  # the export of the copy is the export


def test_rows_that_differ_only_in_their_images_are_two_rows(
    run: Run, clock: Clock, db_path: Path, pictures: Path
) -> None:
    plan = pictures / "plan.csv"
    plan.write_text(
        "content,schedule,platforms,images,alt\n"
        "Same,2026-11-23 09:00,mastodon,chart.png,A chart\n"
        "Same,2026-11-23 09:00,mastodon,photos/kite.jpg,A kite\n"
        "Same,2026-11-23 09:00,mastodon,,\n"
    )
    assert len(_imported_ids(run(import_cli, str(plan)))) == 3
    again = run(import_cli, str(plan))
    assert again.exit_code == 0 and again.stdout.count("exists:") == 3
    assert rows_in(db_path, "posts") == 3

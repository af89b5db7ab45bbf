"""Parquet training data on learners: copy it under a data tag, or list what each learner's
sidecar serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import FlopsError, UsageError

if TYPE_CHECKING:
    from ..data import HostData
    from ..outcome import Outcome
    from ..run import Run
    from ..ssh import HostSession


def copy(run: Run, host: str | None = None, src: str | None = None, tag: str | None = None) -> None:
    """Copy Parquet files into learners' data mounts under ``tag`` (unchanged files are
    skipped)."""
    from .. import data, ui
    from ..hosts import select_targets
    from ..ssh import fan_out

    s = run.settings
    tag = data.check_tag(tag)
    if src is None:
        raise UsageError("--src is missing: give parquet files, folders or globs")
    files = data.collect(src, tag)
    targets = select_targets(host, list(s.inventory), "learner")
    total = sum(f.size for f in files) * len(targets)
    traffic: dict[str, dict[str, int]] = {}
    with ui.Transfer(total, f"{len(files)} files to {len(targets)} hosts") as bar:
        rows = fan_out(
            targets,
            lambda session: data.copy_data(
                session, files, s.learner_data_dir, progress=bar.advance
            ),
            ssh=s.ssh,
            config=run.config,
            dry=run.dry,
            step="learner-data",
            lock=not run.dry,
            traffic=traffic,
            changes=run.changes,
        )
    run.report.count_ssh(traffic)
    run.add(rows)


def listing(
    run: Run, host: str | None = None, tag: str | None = None, as_json: bool = False
) -> dict[str, Any]:
    """Show per learner what its sidecar will serve, and what breaks it (read-only; exit 1
    when anything does)."""
    from .. import data, ui
    from ..hosts import select_targets
    from ..outcome import Report
    from ..ui import Output

    s = run.settings
    if tag is not None:
        data.check_tag(tag)
    targets = select_targets(host, list(s.inventory), "learner")
    found: dict[str, HostData] = {}

    def work(session: HostSession) -> list[Outcome]:
        found[session.label] = data.read_mount(session, s.learner_data_dir)
        return data.listing_outcomes(session.label, found[session.label].only(tag))

    report = Report("learner-data --list" + (f" --tag {tag}" if tag else ""))
    report.extend(run.hosts(report.title, targets, work, step="list"))
    if tag is not None and found and not any(tag in d.tags() for d in found.values()):
        held = sorted({t for d in found.values() for t in d.tags()})
        silent = [t.label for t in targets if t.label not in found]
        raise UsageError(
            f"unknown tag {tag!r}: the learners hold "
            + (f"the tags {', '.join(held)}" if held else "no tagged data")
            + (f" ({', '.join(silent)} did not answer)" if silent else "")
        )
    result = {
        "title": report.title,
        "ok": report.ok,
        "tag": tag,
        "hosts": {
            label: {
                "status": report.host_status(label).value,
                **(
                    found[label].only(tag).to_dict()
                    if label in found
                    else {"detail": "; ".join(o.detail for o in report.rows(label))}
                ),
            }
            for label in report.hosts()
        },
    }
    if as_json:
        ui.print_json(result)
    else:
        ui.render_report(report, Output(verbose=True))  # the listing is its every row
    if not report.ok:
        raise FlopsError("", code=report.exit_code)
    return result

"""`taskvec report`: find the items, run every analysis into `OUT/figures/`, write `OUT/report.html`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from taskvec.errors import TaskvecError
from taskvec.report.analyses import (
    compare_part,
    correlate_part,
    groups,
    lens_part,
    predictions_for,
    project_part,
)
from taskvec.report.html import Section, write_page
from taskvec.report.items import Study, find_items
from taskvec.report.sections import (
    command,
    evaluation_section,
    patching_section,
    sessions_section,
    steering_section,
)

PAGE = "report.html"


def _analysis_sections(
    study: Study, figures: Path, permutations: int, lens_top: int
) -> list[Section]:
    similarity, pca = (
        Section("Compare: task vectors across strategies"),
        Section("PCA of sample vectors"),
    )
    for name, members in groups(study.sessions).items():
        table = compare_part(similarity, name, members, figures)
        project_part(pca, name, members, table, study.evaluations, figures)
    probes = Section("Correlate: does a vector say the answer will be right?")
    for session in study.sessions:
        results = predictions_for(session, study.evaluations)
        if results is not None:
            correlate_part(probes, session, results, figures, permutations)
    lens = Section("Logit lens: what the task vectors say")
    if lens_top > 0:
        for session in study.sessions:
            try:
                lens_part(lens, session, figures, lens_top)
            except TaskvecError as exc:  # a model whose weights are not here: the rest still shows
                lens.text(f"{session.name}: no lens ({exc})", "note")
    return [similarity, pca, probes, lens]


def make_report(
    items: Sequence[Path],
    out: Path,
    output_dir: Path = Path("outputs"),
    permutations: int = 100,
    lens_top: int = 8,
) -> Path:
    """Write `out/report.html` for the sessions and results found in `items` (see `items.find_items`);
    the figures and tables it runs go to `out/figures/`. Returns the page's path."""
    study = find_items(list(items), output_dir)
    if study.empty():
        raise TaskvecError(
            "report: nothing to report; pass sessions, results directories or folders holding them"
        )
    figures = out / "figures"
    remake = command(
        "taskvec",
        "report",
        "--out",
        out,
        "--permutations",
        permutations,
        "--lens-top",
        lens_top,
        *items,
    )
    sections = [
        sessions_section(study),
        evaluation_section(study, figures, remake),
        *_analysis_sections(study, figures, permutations, lens_top),
        patching_section(study),
        steering_section(study),
    ]
    intro = [
        f"{len(study.sessions)} sessions, {len(study.evaluations)} evaluations, "
        f"{len(study.patchings)} patching "
        f"and {len(study.steerings)} steering results. Each figure names the command that makes it again "
        "and the files it read; the whole page is made again by:",
        remake,
    ]
    return write_page(out / PAGE, "taskvec study report", intro, sections)

"""Reference and baseline rows of the DNA and image evaluators, the rows every model row of those domains is
read against: real held-out data and the trivial baselines, through the same evaluator.

    python -m benchmarks.domain_references                    # both (~1 min DNA; images ~1.5 min, + ~1 min
                                                              #   the first time, to train the CNN)
    python -m benchmarks.domain_references --domains dna --genomes E.Coli/MG1655-K12 --window 256
    python -m benchmarks.domain_references --domains image --levels 4 --write-results

DNA: held-out region of the given genome(s) (the data defaults of scmdm.domains.dna.data.load_dna). Images:
Fashion-MNIST at K grey levels; the classifier is trained on first use and cached (scmdm.domains.image.evaluator).
Writes
benchmarks/results/domain_references.json, PNG grids of real and baseline images to --out, and, with
--write-results, the section ``domain_references`` of docs/results/bases.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, command, write_results_section
from scmdm.domains.dna.data import load_dna
from scmdm.domains.dna.evaluator import DnaEvaluator, format_dna_table
from scmdm.domains.image.data import load_images
from scmdm.domains.image.evaluator import ImageEvaluator, format_image_table, pixel_independent_samples, save_image_grid


def dna_rows(args: argparse.Namespace) -> tuple[str, list[dict]]:
    t0 = time.perf_counter()
    split = load_dna(args.genomes, window=args.window, valid_fraction=args.fraction, test_fraction=args.fraction)
    evaluator = DnaEvaluator.from_split(split)
    rows = [("real held-out windows (validation region)", evaluator.reference_row(args.num_samples))]
    rows += evaluator.baseline_rows(args.num_samples)
    rows.append(("training windows (memorised)", evaluator.evaluate(split.train[:rows[0][1].n_samples])))
    seconds = time.perf_counter() - t0
    sizes = split.info()["sizes"]
    head = (f"**DNA** — {', '.join(split.settings['genomes'])}, {args.window}-base windows, held-out region "
            f"(last {args.fraction:.0%} test, {args.fraction:.0%} before it validation; {sizes['train']:,} / "
            f"{sizes['valid']:,} / {sizes['test']:,} windows); reference spectra and GC from the test windows. "
            f"{seconds:.0f} s.")
    return f"{head}\n\n{format_dna_table(rows)}", [{"domain": "dna", "row": n, **m.as_dict()} for n, m in rows]


def image_rows(args: argparse.Namespace) -> tuple[str, list[dict]]:
    t0 = time.perf_counter()
    split = load_images("fashion_mnist", levels=args.levels)
    evaluator = ImageEvaluator.from_split(split)
    accuracy = evaluator.test_accuracy
    t_classifier = time.perf_counter() - t0
    rows = [("real held-out images (validation split)", evaluator.reference_row(args.num_samples))]
    rows += evaluator.baseline_rows(args.num_samples)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    save_image_grid(split.arrays["valid"][:64], out / f"fashion_mnist_K{args.levels}_real.png", args.levels)
    save_image_grid(pixel_independent_samples(split.arrays["train"], args.levels, 64, seed=1),
                    out / f"fashion_mnist_K{args.levels}_pixel_independent.png", args.levels)
    head = (f"**Images** — Fashion-MNIST, K = {args.levels} grey levels; reference statistics from the 10,000 test "
            f"images; classifier {evaluator.classifier_file.name if evaluator.classifier_file else '(not cached)'}, "
            f"test accuracy {accuracy:.4f} ({t_classifier:.0f} s to train or load it and measure it; {seconds:.0f} s "
            "in all).")
    table = format_image_table(rows, evaluator.note())
    return f"{head}\n\n{table}", [{"domain": "image", "row": n, "levels": args.levels, "classifier_accuracy": accuracy,
                                   **m.as_dict()} for n, m in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["dna", "image"], choices=["dna", "image"])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--genomes", default="E.Coli/MG1655-K12")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--fraction", type=float, default=0.05, help="DNA valid and test fraction of each record")
    parser.add_argument("--levels", type=int, default=16, help="Fashion-MNIST grey levels K")
    parser.add_argument("--out", default=str(ROOT / "runs" / "domain_references"))
    parser.add_argument("--write-results", action="store_true", help="update docs/results/bases.md")
    args = parser.parse_args()

    sections, records = [], []
    for domain in args.domains:
        text, rows = dna_rows(args) if domain == "dna" else image_rows(args)
        print(text + "\n", flush=True)
        sections.append(text)
        records += rows
    made_by = command(__file__)
    result = {"command": made_by, "machine": platform.processor() or platform.machine(), "rows": records}
    path = ROOT / "benchmarks" / "results" / "domain_references.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if args.write_results:
        write_results_section("domain_references", f"## DNA and image evaluators: reference and baseline rows\n\n"
                              f"Command: `{made_by}`\n\n" + "\n\n".join(sections), page=RESULTS / "bases.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

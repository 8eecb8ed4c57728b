"""Every test the README's claims table names exists (a renamed or removed test would leave a
claim without its proof)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_claims_table_names_exists():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Claims and the tests"):readme.index("### Fuzzing")]
    named, missing = 0, []
    for row in (r for r in table.splitlines() if r.startswith("|")):
        current = None
        for file, test in re.findall(r"`(test_[a-z0-9_]+\.py)?(?:::([A-Za-z0-9_]+))?`", row):
            current = file or current
            if not current:
                continue
            path = ROOT / "tests" / current
            named += 1
            if not path.is_file():
                missing.append(current)
            elif test and not re.search(rf"^def {test}\(", path.read_text(), re.M):
                missing.append(f"{current}::{test}")
    assert named > 40 and not missing, missing

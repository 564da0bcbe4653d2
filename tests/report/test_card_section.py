"""`peft-audit card`: the model-card section of one variant, and its push into a Hub README
(against a loopback Hub that records the commit)."""

import base64
import json
import re
from http.server import BaseHTTPRequestHandler

import pytest
from adapters.fake_hub import FakeHub, FakeRepo
from synthetic_store import build_synthetic_store
from typer.testing import CliRunner

from peft_audit import __version__
from peft_audit.analysis import load_run_frames
from peft_audit.cli import app
from peft_audit.report.card import BEGIN, END, build_card, replace_section, resolve_variant

README = "---\nlicense: apache-2.0\nbase_model: org/base\n---\n\n# My adapter\n\nIt answers questions.\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_synthetic_store(tmp_path_factory.mktemp("run"), n_variants=6, seed=3)


@pytest.fixture(scope="module")
def tuned(run_dir):
    v = load_run_frames(run_dir).variants
    return v[(v["method"] != "base") & (v["status"] == "done")].iloc[0]


@pytest.fixture(scope="module")
def section(run_dir, tuned):
    return build_card(run_dir, tuned["label"], date="2026-01-02", n_boot=200)


def test_section_holds_settings_changes_with_intervals_judges_and_provenance(section, tuned):
    assert section.startswith(BEGIN) and section.rstrip().endswith(END)
    assert f"variant **{tuned['label']}** (id `{tuned['id']}`)" in section
    assert f"peft-audit {__version__} on 2026-01-02" in section
    assert f"| base model | `{tuned['base_model']}` |" in section
    assert f"| PEFT method | {tuned['method']} " in section and "| evaluation protocol | `" in section
    assert "| deployment gate (default thresholds) | " in section
    safety = section.split("### Safety")[1].split("###")[0]
    rows = re.findall(r"^\| (\w+) \| \d+\.\d \| \d+\.\d \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\*? \| \d+ \|$", safety, re.M)
    assert "malware" in rows and len(rows) >= 5  # one row per hazard category, with its interval
    assert "| **overall** |" in safety
    bbq = section.split("### Fairness (BBQ)")[1].split("###")[0]
    assert re.search(r"^\| age \| [+-]\d+\.\d \[", bbq, re.M)
    judges = section.split("### Judges")[1]
    assert "`keyword`" in judges and "`llm-rubric`" in judges
    assert "No published accuracy for `llm-rubric`" in judges  # an unvalidated judge is said to be one


def test_variant_by_id_prefix_and_clear_errors(run_dir, tuned):
    v = load_run_frames(run_dir).variants
    assert resolve_variant(v, tuned["id"][:8]) == tuned["id"] == resolve_variant(v, tuned["label"])
    with pytest.raises(ValueError, match=r"is no variant of this run; give a label or id: .*\(base\) \["):
        resolve_variant(v, "no-such-variant")
    base = v[v["method"] == "base"].iloc[0]
    with pytest.raises(ValueError, match="is the base model"):
        build_card(run_dir, base["id"], n_boot=50)


def test_replace_section_keeps_the_rest_of_the_card():
    first = replace_section(README, f"{BEGIN}\nold\n{END}\n")
    assert first.startswith(README) and first.endswith(f"{BEGIN}\nold\n{END}\n")
    edited = first + "\n## Citation\n\nkeep me\n"
    second = replace_section(edited, f"{BEGIN}\nnew\n{END}\n")
    assert second == edited.replace("old", "new")
    assert replace_section("", f"{BEGIN}\nx\n{END}\n") == f"{BEGIN}\nx\n{END}\n"


class CommitHub(FakeHub):
    """FakeHub plus the routes huggingface_hub's upload_file posts to: validate-yaml, preupload
    (every file 'regular', sent inline) and commit (ndjson); a commit replaces the repo's files."""

    def __init__(self) -> None:
        self.commits: list[dict] = []
        super().__init__()

    def _handler(self):
        hub, base = self, super()._handler()

        class Handler(base):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                segs = self.path.split("?")[0].strip("/").split("/")
                hub.log.append(("POST", self.path))
                if segs == ["api", "validate-yaml"]:
                    return self._json({"errors": [], "warnings": []})
                repo_id = "/".join(segs[2:4])
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound")
                if segs[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                  "oid": None} for f in files]})
                if segs[4] == "commit":
                    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                    repo = hub.repos[repo_id]
                    for item in lines:
                        if item["key"] == "file":
                            repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    hub.commits.append({"repo": repo_id, "lines": lines, "auth": self.headers.get("Authorization")})
                    return self._json({"commitUrl": f"{hub.url}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha,
                                       "pullRequestUrl": None})
                return self._error(404, "RepoNotFound")

        assert issubclass(Handler, BaseHTTPRequestHandler)
        return Handler


def test_push_replaces_only_the_audit_section_of_the_hub_readme(run_dir, tuned, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets HF_HUB_OFFLINE=1
    old = README + f"\n{BEGIN}\nan older audit\n{END}\n\n## Citation\n\nkeep me\n"
    with CommitHub() as hub:
        hub.repos["org/my-adapter"] = FakeRepo(files={"README.md": old.encode(), "adapter_config.json": b"{}"})
        hub.repos["org/bare"] = FakeRepo(files={"adapter_config.json": b"{}"})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        out = tmp_path / "card.md"
        r = CliRunner().invoke(app, ["card", str(run_dir), "--variant", tuned["id"], "--out", str(out),
                                     "--push", "org/my-adapter"])
        assert r.exit_code == 0, r.output
        assert len(hub.commits) == 1 and hub.commits[0]["auth"] == "Bearer hf_test_token"
        readme = hub.repos["org/my-adapter"].files["README.md"].decode()
        section = out.read_text()
        assert section.startswith(BEGIN) and "an older audit" not in readme
        assert readme == old.replace(f"{BEGIN}\nan older audit\n{END}", section.rstrip("\n"))
        assert hub.repos["org/my-adapter"].files["adapter_config.json"] == b"{}"  # other files untouched

        r = CliRunner().invoke(app, ["card", str(run_dir), "--variant", tuned["id"], "--push", "org/bare"])
        assert r.exit_code == 0, r.output
        assert hub.repos["org/bare"].files["README.md"].decode().startswith(BEGIN)  # a repo without a card gets one

        r = CliRunner().invoke(app, ["card", str(run_dir), "--variant", tuned["id"], "--push", "org/missing"])
        assert r.exit_code == 2 and "could not update README.md of org/missing" in r.output

"""discover against the loopback Hub: listing by tags, metadata fetch, skipped repos, audit file."""

import pytest
import yaml

from cards import CARDS, TRAINER_STATE
from fake_hub import FakeRepo, repo_from_dir
from peft_audit.adapters import discover, read_audit_file, write_audit_file
from test_hub import fake_hub  # noqa: F401  (fixture)

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
TAGS = ["peft", f"base_model:adapter:{BASE}"]


@pytest.fixture
def populated(fake_hub, adapter_dirs):  # noqa: F811
    import json

    card = CARDS["trainer_lora"][0].encode()
    fake_hub.repos["alice/smol-lora"] = repo_from_dir(
        adapter_dirs["lora"], tags=TAGS, downloads=30,
        extra={"README.md": card, "trainer_state.json": json.dumps(TRAINER_STATE).encode()})
    fake_hub.repos["bob/smol-ia3-dpo"] = repo_from_dir(
        adapter_dirs["ia3"], tags=TAGS, downloads=20, extra={"README.md": CARDS["trl_dpo"][0].encode()})
    fake_hub.repos["carol/gated"] = repo_from_dir(adapter_dirs["lora"], tags=TAGS, gated=True, downloads=10)
    fake_hub.repos["dave/new-type"] = repo_from_dir(adapter_dirs["unknown_type"], tags=TAGS, downloads=5)
    fake_hub.repos["erin/no-config"] = FakeRepo(files={"README.md": b"# hi"}, tags=TAGS, downloads=1)
    fake_hub.repos["frank/other-base"] = repo_from_dir(adapter_dirs["lora"], tags=["peft", "base_model:adapter:x/y"])
    return fake_hub


def test_discover_lists_fetches_and_skips(populated, tmp_path):
    res = discover(BASE, limit=10)
    af = res.audit_file
    assert [e.id for e in af.adapters] == ["alice/smol-lora", "bob/smol-ia3-dpo"]
    lora = af.adapters[0]
    assert lora.revision == populated.repos["alice/smol-lora"].sha and lora.ref == f"alice/smol-lora@{lora.revision}"
    assert lora.method == "lora"
    assert lora.metadata["learning_rate"] == {"value": 0.0002, "source": "README.md:training_hyperparameters"}
    assert lora.metadata["num_epochs"]["value"] == 3
    assert af.adapters[1].metadata["algo"]["value"] == "dpo"
    skipped = {s.id: s for s in af.skipped}
    assert set(skipped) == {"carol/gated", "dave/new-type", "erin/no-config"}
    assert skipped["carol/gated"].status == "skipped" and "gated" in skipped["carol/gated"].reason
    assert "VERY_NEW_TUNING" in skipped["dave/new-type"].reason
    assert "adapter_config.json" in skipped["erin/no-config"].reason
    # only the small metadata files were fetched
    fetched = {p.rsplit("/", 1)[-1] for m, p in populated.log if "/resolve/" in p}
    assert fetched <= {"adapter_config.json", "README.md", "trainer_state.json"}

    path = write_audit_file(af, tmp_path / "adapters.yaml")
    assert read_audit_file(path) == af
    assert yaml.safe_load(path.read_text())["adapters"][0]["metadata"]["r"] == {"value": 4, "source": "adapter_config.json:r"}


def test_method_filter_and_limit(populated):
    res = discover(BASE, limit=10, methods=["ia3"])
    assert [e.id for e in res.audit_file.adapters] == ["bob/smol-ia3-dpo"]
    assert res.filtered_out == ["alice/smol-lora (lora)"]
    res = discover(BASE, limit=1)
    assert [e.id for e in res.audit_file.adapters] == ["alice/smol-lora"] and not res.audit_file.skipped


def test_rate_limited_repo_is_retried(populated):
    populated.rate_limit["alice/smol-lora"] = 3
    res = discover(BASE, limit=2)
    assert [e.id for e in res.audit_file.adapters] == ["alice/smol-lora", "bob/smol-ia3-dpo"]


def test_audit_file_errors_name_file_and_key(tmp_path):
    from peft_audit.config import ConfigError

    p = tmp_path / "adapters.yaml"
    p.write_text("version: 1\nadapters:\n  - {id: org/x}\n")
    with pytest.raises(ConfigError, match=r"adapters\.yaml.*\n.*adapters\.0\.ref"):
        read_audit_file(p)
    with pytest.raises(ConfigError, match="peft-audit discover"):
        read_audit_file(tmp_path / "missing.yaml")

"""Documentation that must stay true: every setting is documented."""

from __future__ import annotations

from service.config import Settings
from tests.conftest import ROOT


def test_every_setting_is_in_the_configuration_doc() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"MODELSERVE_{name.upper()}" not in doc]
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_every_metric_is_in_the_operations_doc() -> None:
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    doc = (ROOT / "docs" / "operations.md").read_text()
    names = {m.name for m in registry.collect()}
    missing = sorted(n for n in names if n not in doc)
    assert not missing, f"document these in docs/operations.md: {missing}"

"""Ready configs: the demo's and one per published protocol, each passed to the workflow with
``--configfile`` over the repository's config.yaml (README, "Your own corpora")."""

from pathlib import Path

RECIPES_DIR = Path(__file__).parent
DEMO_CONFIG = RECIPES_DIR / "demo.yaml"


def protocol_recipes() -> list[Path]:
    """The recipes for real corpora (every config here but the demo's)."""
    return sorted(path for path in RECIPES_DIR.glob("*.yaml") if path != DEMO_CONFIG)

"""The workflow's config: read and merged as Snakemake merges --configfile files, typed, its paths
expanded, and checked against its schema with errors that name the key and what is allowed; the
``mfaw`` alias; which datasets take part.

The workflow calls :func:`prepare_config`, then ``snakemake.utils.validate`` with :data:`SCHEMA_PATH`
(which also fills in the schema's defaults), then the checks of what the config names
(avemotion.config_checks) and avemotion.datasets.check_datasets. The settings jobs are given come
from avemotion.job_params.

A core module: it imports no other layer. What is checked that other layers own is registered by its
owner (the corpus layouts, by avemotion.datasets).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from avemotion.config_errors import read_yaml
from avemotion.io import is_utf8_name

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
DATASET_ALIASES = {"mfaw": "mafw"}  # MAFW is misspelt "MFAW" in some documents


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key and the allowed values."""


REPOSITORY_CONFIG = Path(__file__).parent.parent / "config.yaml"


def merge_config(base: dict, override: dict) -> dict:
    """``override`` over ``base`` as Snakemake merges --configfile files: mappings key by key, any
    other value (a list of experiments too) replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge_config(merged[key], value)
        merged[key] = value
    return merged


def load_config(*paths) -> dict:
    """The config the workflow sees for ``snakemake --configfile PATHS...`` (before its checks): the
    repository's config.yaml with each file merged over it in turn."""
    config = read_yaml(REPOSITORY_CONFIG)
    for path in paths:
        config = merge_config(config, read_yaml(path))
    return config


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def apply_aliases(config: dict, warn=None) -> None:
    """Rename alias dataset names in place, with a one-line warning each: the keys under
    ``datasets``, and the names in each experiment's ``datasets`` and ``dataset_weights``."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    datasets = config.get("datasets")
    for alias, name in DATASET_ALIASES.items():
        note = f"('{alias.upper()}' is a misspelling of {name.upper()})"
        if isinstance(datasets, dict) and alias in datasets:
            # The alias only appears where a person wrote it, so its keys win over the same dataset's
            # keys from the default config that a --configfile is merged into.
            datasets[name] = {**(datasets.get(name) or {}), **(datasets.pop(alias) or {})}
            warn(f"avemotion: config key datasets.{alias} is read as datasets.{name} {note}")
        for experiment in config.get("experiments") or []:
            if not isinstance(experiment, dict):
                continue
            label = f"experiment {experiment.get('name')!r}"
            if isinstance(experiment.get("datasets"), list) and alias in experiment["datasets"]:
                experiment["datasets"] = [name if dataset == alias else dataset for dataset in experiment["datasets"]]
                warn(f"avemotion: {label}: dataset {alias} is read as {name} {note}")
            weights = experiment.get("dataset_weights")
            if isinstance(weights, dict) and alias in weights:
                weights[name] = weights.pop(alias)
                warn(f"avemotion: {label}: dataset_weights.{alias} is read as dataset_weights.{name} {note}")


def dataset_defaults(dataset: str) -> dict:
    """A dataset's settings as the workflow fills them in when the config names none (the schema's
    defaults: its chunk count, CREMA-D's vote modality), for tools that index outside the workflow."""
    schema = load_schema()
    defaults = section_defaults(_resolve(schema["properties"]["datasets"]["properties"][dataset], schema))
    return {key: value for key, value in defaults.items() if key != "root"}


def section_defaults(section: dict) -> dict:
    """The defaults a schema section states for its keys."""
    return {key: spec["default"] for key, spec in section["properties"].items() if "default" in spec}


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref", "")
    if ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        resolved = {**_resolve(target, root), **{k: v for k, v in schema.items() if k != "$ref"}}
        # a dataset adds its own properties beside the shared ones, and defaults to shared ones
        shared, own = target.get("properties", {}), schema.get("properties", {})
        resolved["properties"] = {key: {**shared.get(key, {}), **own.get(key, {})} for key in {**shared, **own}}
        return resolved
    return schema


def _key_paths(schema: dict, root: dict, path: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(key, its dotted path) of every key the schema allows, ``experiments[]`` for list items."""
    if depth > 6:
        return []
    schema = _resolve(schema, root)
    found = []
    for name, child in _resolved_properties(schema, root).items():
        where = f"{path}.{name}" if path else name
        found.append((name, where))
        found += _key_paths(child, root, where, depth + 1)
    if isinstance(schema.get("items"), dict):
        found += _key_paths(schema["items"], root, f"{path}[]", depth + 1)
    return found


def _resolved_properties(schema: dict, root: dict) -> dict:
    keys = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        keys.update(_resolve(part, root).get("properties", {}))
    return keys


def _elsewhere(name: str, root: dict) -> str:
    """Where the schema does allow an unknown key's name (a key written at the wrong level), as a hint."""
    homes = sorted({where for key, where in _key_paths(root, root) if key == name})
    return f" ({name} belongs under {' or '.join(where.rsplit('.', 1)[0] if '.' in where else 'the top level' for where in homes[:3])})" if homes else ""


def _allowed_keys(schema: dict, root: dict) -> list[str]:
    return list(_resolved_properties(_resolve(schema, root), root))


# A number as YAML 1.2 writes it: PyYAML (YAML 1.1) reads one without a point, 1e-3, as text
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _types(schema: dict, root: dict) -> set[str]:
    """The JSON types ``schema`` allows, its oneOf/anyOf branches' included."""
    schema = _resolve(schema, root)
    kinds = schema.get("type", [])
    found = {kinds} if isinstance(kinds, str) else set(kinds)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        found |= _types(branch, root)
    return found


def _branches(schema: dict, root: dict) -> list[dict]:
    schema = _resolve(schema, root)
    return [schema] + [_resolve(part, root) for part in schema.get("oneOf", []) + schema.get("anyOf", []) + schema.get("allOf", [])]


def typed_scalars(value, schema: dict, root: dict):
    """``value`` with each scalar its schema types as a number, boolean or null made one where it
    came as text (YAML 1.1 reads ``1e-3`` as text; ``--config 'training={epochs: 3}'`` passes nested
    values as text) and whole numbers written with a point (``4.0``) made integers where the schema
    wants an integer; anything else as it is, for the schema check to name."""
    branches = _branches(schema, root)
    if isinstance(value, dict):
        fields, extra = {}, {}
        for branch in branches:
            fields.update(branch.get("properties", {}))
            extra = branch["additionalProperties"] if isinstance(branch.get("additionalProperties"), dict) else extra
        return {key: typed_scalars(item, fields.get(key, extra), root) for key, item in value.items()}
    if isinstance(value, list):
        items = next((branch["items"] for branch in branches if isinstance(branch.get("items"), dict)), {})
        return [typed_scalars(item, items, root) for item in value]
    types = _types(schema, root)
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)
    if not isinstance(value, str) or not types or any(value in branch.get("enum", []) or value == branch.get("const") for branch in branches):
        return value
    text = value.strip()
    if "null" in types and text in ("null", "Null", "NULL", "~"):
        return None
    if "boolean" in types and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if types & {"integer", "number"} and "string" not in types and _NUMBER.fullmatch(text):
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)  # exactly, however long (a seed)
        number = float(text)
        return int(number) if number.is_integer() and "number" not in types else number
    return value


# How the schema's types read in a message's "allowed" part
_TYPE_WORDS = {
    "object": "a mapping (key: value lines, or {} for none)",
    "array": "a list, e.g. [a, b]",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


# How an error about the config as a whole (not one of its keys) names where it is.
TOP_LEVEL = "(top level)"


def _key(path, config: dict) -> str:
    """The dotted key of a schema error's path; an experiment by its name, as the later checks name it."""
    parts = [str(part) for part in path]
    if len(parts) > 1 and parts[0] == "experiments" and isinstance(path[1], int) and parts[2:] != ["name"]:
        experiment = config["experiments"][path[1]]
        if isinstance(experiment, dict) and isinstance(experiment.get("name"), str) and experiment["name"]:
            parts[1] = experiment["name"]
    return ".".join(parts) or TOP_LEVEL


def _describe(error, root: dict, config: dict) -> list[str]:
    """The lines that say what is wrong: one per unknown key, as every other mistake has."""
    key = _key(error.absolute_path, config)
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return [f"{key}: {error.instance!r} is not allowed; allowed values: {allowed}"]
    if error.validator in ("additionalProperties", "unevaluatedProperties", "propertyNames"):
        if error.validator == "propertyNames":
            unknown, allowed = [error.instance], error.schema["propertyNames"].get("enum", [])
        else:
            allowed = _allowed_keys(error.schema, root)
            unknown = [k for k in error.instance if k not in allowed]
        prefix = f"{key}." if key != TOP_LEVEL else ""
        return [f"{prefix}{name}: unknown key; allowed keys here: {', '.join(allowed)}{_elsewhere(name, root)}" for name in unknown]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{key}: {', '.join(missing)} missing; required keys here: {', '.join(error.validator_value)}"]
    if error.validator == "type":
        types = [error.validator_value] if isinstance(error.validator_value, str) else error.validator_value
        allowed = " or ".join(_TYPE_WORDS.get(name, name) for name in types)
        if "array" in types and error.schema.get("minItems", 0) <= 1:
            allowed += " (one item: [a])"  # a list of one written as its item (leave_out_speakers: 6)
        return [f"{key}: {error.instance!r} is not of type {error.validator_value}; allowed: {allowed}"]
    if error.validator == "uniqueItems":
        repeated = sorted({repr(item) for item in error.instance if error.instance.count(item) > 1})
        return [f"{key}: {error.instance!r} repeats {', '.join(repeated)}; allowed: each item once"]
    if error.validator in ("oneOf", "anyOf", "pattern") and error.schema.get("description"):
        return [f"{key}: {error.instance!r} is not allowed; allowed: {error.schema['description']}"]
    if error.validator in _BOUNDS:
        return [f"{key}: {error.message}; allowed: {_allowed_range(error.schema)}"]
    if error.validator in ("minItems", "maxItems"):
        described = f" ({' '.join(error.schema['description'].split())})" if error.schema.get("description") else ""
        count = len(error.instance)
        return [f"{key}: {error.instance!r} has {count} item{'s' * (count != 1)}; allowed: {_allowed_count(error.schema)}{described}"]
    return [f"{key}: {error.message}"]


# jsonschema's bound keywords, with the words that say each bound
_BOUNDS = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most", "exclusiveMaximum": "less than"}


def _allowed_range(schema: dict) -> str:
    """A number's allowed values as words: both inclusive bounds as "1 to 8", otherwise each bound."""
    if "minimum" in schema and "maximum" in schema:
        return f"{schema['minimum']} to {schema['maximum']}"
    return " and ".join(f"{words} {schema[bound]}" for bound, words in _BOUNDS.items() if bound in schema)


def _allowed_count(schema: dict) -> str:
    """A list's allowed lengths as words."""
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and low == high:
        return f"exactly {low} items"
    return " and ".join(f"{words} {n} items" for words, n in (("at least", low), ("at most", high)) if n is not None)


def config_errors(config: dict, schema: dict | None = None) -> list[str]:
    """Every schema violation of ``config``, each naming the key and what is allowed."""
    schema = schema or load_schema()
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    # dict.fromkeys: jsonschema reports each missing required key apart, and each line names them all
    return list(dict.fromkeys(line for error in errors for line in _describe(error, schema, config)))


def prepare_config(config: dict, warn=None) -> None:
    """Apply aliases, make scalars written as text the numbers, booleans and nulls their keys take
    (:func:`typed_scalars`), expand ``~`` and ``$VARIABLES`` in paths (:func:`expanded_paths`), then
    fail with every schema violation at once."""
    apply_aliases(config, warn)
    schema = load_schema()
    config.update(typed_scalars(config, schema, schema))
    expanded_paths(config)
    errors = config_errors(config, schema)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


# Keys that name files or folders, as (section path, key) with "*" for every dataset or experiment
PATH_KEYS = (
    (("datasets", "*"), "root"),
    (("datasets", "*", "face"), "openface_bin"),
    (("face",), "openface_bin"),
    (("model",), "pretrained"),
    (("model",), "audio_weights"),
    (("experiments", "*", "model"), "pretrained"),
    (("experiments", "*", "model"), "audio_weights"),
    (("predict",), "input_dir"),
)


def expanded_paths(config: dict) -> None:
    """``~`` and ``$VARIABLE``s in the config's paths (:data:`PATH_KEYS`) expanded in place, as a
    shell would: written in a config file, nothing else expands them."""
    for section, key in PATH_KEYS:
        for holder in _sections(config, section):
            if isinstance(holder.get(key), str):
                holder[key] = os.path.expandvars(os.path.expanduser(holder[key]))


def _sections(node, path: tuple) -> list[dict]:
    """The mappings at ``path`` under ``node`` ("*": every value of a mapping or item of a list)."""
    if not path:
        return [node] if isinstance(node, dict) else []
    head, rest = path[0], path[1:]
    if head == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return [found for child in children for found in _sections(child, rest)]
    return _sections(node.get(head), rest) if isinstance(node, dict) else []


def holds_wildcards(path) -> bool:
    """Whether ``path`` holds { or }, which Snakemake reads as wildcards in a job's file names: such
    a file cannot be a job's input."""
    return "{" in str(path) or "}" in str(path)


def snakemake_can_name(path) -> bool:
    """Whether ``path`` can be a job's file: no wildcard braces, and a UTF-8 name (Snakemake writes
    a job's files into its lock files as UTF-8; another encoding's bytes stopped the whole run)."""
    return is_utf8_name(path) and not holds_wildcards(path)


def sorted_keys(value):
    """``value`` with every mapping's keys in sorted order (lists as they are): what a job's dict
    param is made into, since Snakemake compares params by their text, and a mapping's key order is
    the order config files happened to name the keys in (the same values in another order would
    rerun every chunk job and retrain every model)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def is_enabled(settings: dict) -> bool:
    """A dataset takes part when it says so, or, when it does not, when its root is set."""
    return bool(settings.get("enabled", settings.get("root") is not None))


def enabled_datasets(config: dict) -> list[str]:
    return [name for name, settings in config.get("datasets", {}).items() if is_enabled(settings or {})]


NO_CORPUS = (
    "config: no corpus configured: set datasets.crema_d.root, datasets.enterface.root and/or "
    "datasets.mafw.root to the corpora on disk (in a file passed with --configfile, e.g. a copy of a "
    "recipe in avemotion/recipes/); `make demo` runs the workflow on the bundled demo corpora"
)


def switched_off_roots(config: dict) -> list[str]:
    """Datasets whose root is set but that ``enabled: false`` keeps out: a recipe turns off the
    corpora it does not use, which overrides a root set in the user's own file without a word."""
    return [name for name, settings in config.get("datasets", {}).items() if settings.get("root") is not None and settings.get("enabled") is False]


def dataset_notices(config: dict) -> list[str]:
    """One line per dataset left out although its root is set."""
    return [
        f"avemotion: datasets.{name} takes no part: its root is set but datasets.{name}.enabled is false "
        f"(as a recipe sets it for the corpora it does not use); set enabled: true to include it"
        for name in switched_off_roots(config)
    ]


def check_dataset_keys(config: dict) -> None:
    """At least one dataset is enabled, and each enabled one has a root (whether the root holds its
    corpus is the readers' knowledge: avemotion.datasets.check_datasets)."""
    for name, settings in config.get("datasets", {}).items():
        if settings.get("enabled") and settings.get("root") is None:
            raise ConfigError(f"config: datasets.{name}.root: not set, but datasets.{name}.enabled is true; set the corpus root or enabled: false")
    if not enabled_datasets(config) and switched_off_roots(config):
        names = switched_off_roots(config)
        raise ConfigError(
            f"config: no corpus takes part: {', '.join(f'datasets.{name}.enabled' for name in names)}: false "
            f"although their roots are set (a recipe sets it for the corpora it does not use); allowed: true for the corpora to use"
        )
    if not enabled_datasets(config):
        raise ConfigError(NO_CORPUS)

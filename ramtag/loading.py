"""Loading a ``Tagger``: the weights, the vocabulary and its thresholds, open-set tags.

What every command's model options come down to (``engine.local.tagger_for``), and the Python API's
``ramtag.load_tagger``. File names and tag names are checked before the weights load, so a mistake
in them costs no model load.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from .devices import resolve_device
from .errors import UsageError
from .model.config import MODEL_KINDS
from .model.labels import VOCAB_MODES
from .model.load import load_model
from .tagger import Tagger
from .vocabulary import named_thresholds, prepare_vocabulary


def load_tagger(
    checkpoint: str | Path | None = None,
    *,
    model: str | None = None,
    tag_list: str | Path | None = None,
    tag_list_zh: str | Path | None = None,
    thresholds: str | Path | None = None,
    threshold: float | None = None,
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    only_tags: Sequence[str] | str | None = None,
    tags: str | Path | Sequence[str] | None = None,
    vocab: str = "open",
    text_encoder: str | None = None,
) -> Tagger:
    """Load RAM++ (default) or RAM with its vocabulary.

    Without ``checkpoint`` the released weights of ``model`` are downloaded at first use; with it,
    the model kind is read from the file and ``model``, when given, must agree. ``only_tags``: score
    only these tags of the vocabulary (``Tagger.only``), names checked before the weights load.
    ``tags``: open-set tags (what ``--tags`` takes: ``openset.read_spec``), alone or after the
    built-in ones (``vocab`` "both"), embedded with ``text_encoder`` where the model runs.
    ``thresholds``: a file for the tag list, one value per tag the run scores in its order, or one
    naming its tags (``0.62<TAB>sky``, as ``ramtag eval --calibrate`` writes them for the scores of
    some tags), applied by name; open-set tags otherwise get ``threshold`` or 0.5.
    """
    if model is not None and model not in MODEL_KINDS:
        raise UsageError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")
    _check_vocabulary_options(tags, vocab, text_encoder, only_tags, threshold)
    if isinstance(tags, (list, tuple)):  # names, as a list: what a comma list gives
        tags = ",".join(str(name) for name in tags)
    from .model.needed import check_model_files

    # Every missing file in one error, at once (before anything is downloaded).
    check_model_files(checkpoint, model=model, tag_list=tag_list, tag_list_zh=tag_list_zh, thresholds=thresholds)
    found, open_tags = None, 0
    if tags is not None:  # read before the weights load: a mistake in --tags costs no model load
        from .openset import read_spec, spec_tags

        found = read_spec(tags)
        open_tags = len(spec_tags(found))
    prepared = prepare_vocabulary(  # given once the weights load: not as a first line before their error
        tag_list=tag_list, tag_list_zh=tag_list_zh, thresholds=thresholds, threshold=threshold,
        only_tags=only_tags, open_tags=open_tags, vocab=vocab,
    )
    vocabulary, named, open_values, notes = prepared.vocabulary, prepared.named, prepared.open_values, prepared.notes
    if checkpoint is None:
        from .model.download import weights_file

        checkpoint = weights_file(model or "ram_plus")
    network, info = load_model(
        Path(checkpoint), num_tags=len(vocabulary), kind=model, image_size=image_size
    )
    for note in notes:  # each of its own category (a short thresholds file's is no DefaultThresholdWarning)
        warnings.warn(note, stacklevel=2)
    tagger = Tagger(network, vocabulary, device=resolve_device(device), precision=precision, info=info)
    if only_tags is not None:
        tagger = tagger.only(only_tags)
    if found is not None:
        from .openset import load_open_set, open_set_tagger

        open_set = load_open_set(tags, text_encoder=text_encoder, device=str(tagger.device), found=found)
        tagger = open_set_tagger(tagger, open_set, vocab=vocab, threshold=threshold, thresholds=open_values)
    if named is not None and threshold is None:  # (--threshold sets every tag, as with any file)
        values, said = named_thresholds(tagger.vocabulary, named, Path(thresholds))
        for note in said:
            warnings.warn(note, stacklevel=2)
        tagger = tagger.with_thresholds(values)
    return tagger


def _check_vocabulary_options(
    tags: object, vocab: str, text_encoder: str | None, only_tags: object, threshold: object
) -> None:
    """What the command line refuses, refused here too (``Job.check`` words them for its flags)."""
    if vocab not in VOCAB_MODES:
        raise UsageError(f"vocab (--vocab) must be one of {', '.join(VOCAB_MODES)}, not {vocab!r}")
    if tags is None and (vocab != "open" or text_encoder is not None):
        raise UsageError("vocab and text_encoder (--vocab, --text-encoder) go with open-set tags (tags, --tags)")
    if tags is not None and vocab == "open" and only_tags is not None:
        raise UsageError("only_tags (--only-tags) picks built-in tags, which vocab='open' leaves out; "
                         "use vocab='both' (--vocab both)")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise UsageError(f"threshold {threshold!r}: give a number from 0 to 1")

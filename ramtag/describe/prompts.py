"""What each tag is described by: the RAM++ prompts, and templates for describing without an LLM.

RAM++ (Huang et al., 2023) describes a tag by ``a photo of a {tag}.`` followed by ten LLM answers to
each of five fixed questions, 51 texts in all; the model was trained on descriptions made this way,
so the wording of the questions is part of the method and is kept exactly. The templates below are
ramtag's own: they let open-set tagging work with no LLM at all, at some cost in accuracy.
"""

from __future__ import annotations

ANSWERS_PER_PROMPT = 10
# Sampling of the official descriptions: many varied answers, each short enough for CLIP's 77 tokens.
TEMPERATURE = 0.99
MAX_TOKENS = 77

_QUESTIONS = (
    "Describe concisely what a(n) {tag} looks like:",
    "How can you identify a(n) {tag} concisely?",
    "What does a(n) {tag} look like concisely?",
    "What are the identifying characteristics of a(n) {tag}:",
    "Please provide a concise description of the visual characteristics of {tag}:",
)
DESCRIPTIONS_PER_TAG = 1 + len(_QUESTIONS) * ANSWERS_PER_PROMPT

# Fifty ways of putting a thing in a picture: places, framings, conditions and renderings, so the
# re-weighting of RAM++ still has something to choose between when no LLM wrote the texts.
_TEMPLATES = (
    "a picture showing {a} {tag}.",
    "an image that contains {a} {tag}.",
    "{a} {tag}, photographed in daylight.",
    "{a} {tag}, photographed at night.",
    "{a} {tag} seen from up close.",
    "{a} {tag} seen from far away.",
    "{a} {tag} seen from above.",
    "{a} {tag} seen from the side.",
    "the {tag} in the middle of the frame.",
    "the {tag} partly hidden behind something.",
    "a snapshot with {a} {tag} in the background.",
    "a snapshot with {a} {tag} in the foreground.",
    "several of the {tag} in one picture.",
    "a single {tag} on its own.",
    "{a} {tag} indoors.",
    "{a} {tag} outdoors.",
    "{a} {tag} in a natural setting.",
    "{a} {tag} in a city.",
    "{a} {tag} at home.",
    "a tiny {tag} in a wide scene.",
    "a detailed view of the {tag}.",
    "a sharp, well-lit image of {a} {tag}.",
    "a dim, grainy image of {a} {tag}.",
    "a blurred image of {a} {tag}.",
    "an overexposed image of {a} {tag}.",
    "a monochrome image of {a} {tag}.",
    "a colourful image of {a} {tag}.",
    "a phone camera shot of {a} {tag}.",
    "a professional shot of {a} {tag}.",
    "an old faded print showing {a} {tag}.",
    "a drawing of {a} {tag}.",
    "a sketch of {a} {tag}.",
    "a 3d rendering of {a} {tag}.",
    "an illustration of {a} {tag}.",
    "a screenshot with {a} {tag}.",
    "a poster featuring {a} {tag}.",
    "a model of {a} {tag}.",
    "a toy version of {a} {tag}.",
    "a large {tag}.",
    "a small {tag}.",
    "a new {tag}.",
    "an old {tag}.",
    "a typical example of {a} {tag}.",
    "an unusual example of {a} {tag}.",
    "what {a} {tag} looks like.",
    "this is {a} {tag}.",
    "there is {a} {tag} here.",
    "I took a picture of {a} {tag}.",
    "someone with {a} {tag}.",
    "{a} {tag} next to other things.",
)


def _article(tag: str) -> str:
    return "an" if tag[:1].lower() in "aeiou" else "a"


def photo_line(tag: str) -> str:
    """The first description of every tag, lower-cased as in the official rare-200 file."""
    return f"a photo of a {tag.lower()}."


def questions(tag: str) -> list[str]:
    """The five questions asked about ``tag``, each answered ``ANSWERS_PER_PROMPT`` times."""
    return [question.format(tag=tag) for question in _QUESTIONS]


def template_descriptions(tag: str) -> list[str]:
    """51 descriptions written from templates, for ``--llm none`` and ``--tags "a,b"``."""
    name = tag.strip()
    return [photo_line(name)] + [
        template.format(a=_article(name), tag=name) for template in _TEMPLATES
    ]

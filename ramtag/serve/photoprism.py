"""PhotoPrism's Vision API for labels: ``POST /api/v1/vision/labels``.

PhotoPrism (``internal/ai/vision``) sends ``{"id", "model", "version", "images": [data URLs]}`` (or
``"url"``: one image it serves for download), and reads back ``{"id", "code", "model": {"type",
"name", "version", "resolution"}, "result": {"labels": [{"name", "source", "priority",
"confidence", "topicality"}]}}``, or ``{"id", "code", "error"}`` when the request failed. Its
confidence is a fraction (it keeps ``100 - 100 x confidence`` as the label's uncertainty); ramtag
gives the tag's score there and as topicality. Labels of all the request's images are returned
together, best first, each name once.
"""

from __future__ import annotations

from typing import Any

from .service import BadRequest, Incoming

SOURCE = "image"  # PhotoPrism's entity.SrcImage: labels that come from the image itself


def request_images(body: Any) -> tuple[str, list[Incoming]]:
    """The request id and its images, or ``BadRequest``."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with an 'images' list")
    ident = body.get("id")
    ident = str(ident) if ident is not None else ""
    images = body.get("images") or []
    if not isinstance(images, list):
        raise BadRequest("'images' must be a list of data URLs (or http(s) URLs)")
    if isinstance(body.get("url"), str) and body["url"]:
        images = [*images, body["url"]]
    if not all(isinstance(item, str) for item in images):
        raise BadRequest("'images' must be a list of data URLs (or http(s) URLs)")
    return ident, [Incoming(name=f"image-{number}", text=item) for number, item in enumerate(images)]


def labels_response(ident: str, answers: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    best: dict[str, float] = {}
    for answer in answers:
        for name, score in zip(answer["tags"], answer["scores"]):
            best[name] = max(score, best.get(name, 0.0))
    labels = [
        {"name": name, "source": SOURCE, "priority": 0, "confidence": round(score, 6), "topicality": round(score, 6)}
        for name, score in sorted(best.items(), key=lambda item: -item[1])
    ]
    model = {"type": "labels", "name": "ramtag-" + str(info["model_kind"]).replace("_", "-"),
             "version": str(info["ramtag_version"]), "resolution": int(info["input_size"])}
    response: dict[str, Any] = {"id": ident, "code": 200, "model": model, "result": {"labels": labels}}
    errors = [answer["error"] for answer in answers if answer["error"]]
    if errors and not labels:
        return error_response(ident, 400, errors[0])
    return response


def error_response(ident: str, code: int, message: str) -> dict[str, Any]:
    return {"id": ident, "code": code, "error": message}

"""S3's XML: answers and errors written out, and the request bodies S3 clients send
(CompleteMultipartUpload, Delete, CreateBucketConfiguration) parsed with a size cap, without a
DOCTYPE (so no entities, external or internal) and without namespaces."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from .errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 2 * 1024 * 1024  # the largest XML body taken (1000 keys of 1024 bytes fit)
MAX_KEYS_PER_DELETE = 1000
MAX_PARTS = 10000
OWNER_ID = "storage-server"

Node = tuple[str, "str | int | bool | Iterable[Node] | None"]


def iso(when: datetime) -> str:
    """A time as S3 writes it in XML: 2006-02-03T16:45:09.000Z."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def http_date(when: datetime) -> str:
    return format_datetime(when.replace(microsecond=0), usegmt=True)


def _render(node: Node, out: list[str]) -> None:
    name, value = node
    if value is None:
        return
    if isinstance(value, bool):
        out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
    elif isinstance(value, str | int):
        out.append(f"<{name}>{escape(str(value))}</{name}>")
    else:
        out.append(f"<{name}>")
        for child in value:
            _render(child, out)
        out.append(f"</{name}>")


def document(root: str, children: Iterable[Node]) -> bytes:
    """An S3 XML answer: `root` in the S3 namespace holding `children` ((name, value) pairs;
    a value is text, a number, a bool, None (left out) or more pairs)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{root} xmlns="{NS}">']
    for child in children:
        _render(child, out)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def error(code: str, message: str, resource: str, request_id: str, extra: dict[str, str]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', "<Error>"]
    for node in [("Code", code), ("Message", message), *extra.items(), ("Resource", resource)]:
        _render(node, out)
    _render(("RequestId", request_id), out)
    out.append("</Error>")
    return "".join(out).encode("utf-8")


def owner() -> Node:
    return ("Owner", [("ID", OWNER_ID), ("DisplayName", OWNER_ID)])


def parse(body: bytes, root: str) -> ET.Element:
    """The body as an element tree with namespaces dropped; raise MalformedXML."""
    if len(body) > MAX_BODY:
        raise S3Error("MalformedXML", f"the XML body is over {MAX_BODY} bytes")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise S3Error("MalformedXML", "DOCTYPE and ENTITY declarations are not accepted")
    try:
        element = ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML", "the body is not well-formed XML") from None
    for node in element.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    if element.tag != root:
        raise S3Error("MalformedXML", f"the root element is not <{root}>")
    return element


def parse_delete(body: bytes) -> tuple[bool, list[str]]:
    """A DeleteObjects body: (quiet, keys); at most 1000 keys."""
    element = parse(body, "Delete")
    quiet = (element.findtext("Quiet") or "").strip().lower() == "true"
    keys = []
    for obj in element.findall("Object"):
        key = obj.findtext("Key")
        if key is None:
            raise S3Error("MalformedXML", "an <Object> has no <Key>")
        keys.append(key)
    if not keys or len(keys) > MAX_KEYS_PER_DELETE:
        raise S3Error("MalformedXML", f"a Delete names 1 to {MAX_KEYS_PER_DELETE} objects")
    return quiet, keys


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """A CompleteMultipartUpload body: its (part number, ETag) pairs as sent."""
    element = parse(body, "CompleteMultipartUpload")
    parts = []
    for part in element.findall("Part"):
        number, etag = part.findtext("PartNumber"), part.findtext("ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise S3Error("MalformedXML", "each <Part> needs a <PartNumber> and an <ETag>")
        parts.append((int(number.strip()), etag.strip()))
    if not parts:
        raise S3Error("MalformedXML", "a CompleteMultipartUpload names at least one part")
    if len(parts) > MAX_PARTS:
        raise S3Error("MalformedXML", f"at most {MAX_PARTS} parts")
    return parts


def parse_location(body: bytes) -> str | None:
    """A CreateBucketConfiguration's LocationConstraint (None: an empty body or none given)."""
    if not body.strip():
        return None
    return parse(body, "CreateBucketConfiguration").findtext("LocationConstraint")

"""Pure framing for the MongoDB wire protocol: bytes in, messages out, no I/O.

Only the opcodes a modern driver uses against a standalone server are understood:
``OP_QUERY`` (the legacy handshake on ``admin.$cmd``), its ``OP_REPLY`` answer, and ``OP_MSG``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

HEADER_SIZE = 16
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024

FLAG_CHECKSUM_PRESENT = 1 << 0
FLAG_MORE_TO_COME = 1 << 1

Document = dict[str, Any]

# Keep binary subtypes exactly as sent; naive UTC datetimes are what mongomock stores.
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=False)

_HEADER = struct.Struct("<iiii")


class ProtocolError(Exception):
    """The peer sent bytes that are not a message this server understands."""


@dataclass(frozen=True, slots=True)
class Header:
    """The 16-byte header that starts every message."""

    length: int
    request_id: int
    response_to: int
    op_code: int


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded request: the command document and how the client expects the answer."""

    request_id: int
    op_code: int
    body: Document
    expects_reply: bool


def parse_header(data: bytes) -> Header:
    """Decode a message header and check that the announced length is sane."""
    length, request_id, response_to, op_code = _HEADER.unpack(data[:HEADER_SIZE])
    if not HEADER_SIZE < length <= MAX_MESSAGE_SIZE_BYTES:
        raise ProtocolError(f"invalid message length {length}")
    return Header(length, request_id, response_to, op_code)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode(), end + 1


def _decode_one(data: bytes, offset: int) -> tuple[Document, int]:
    (size,) = struct.unpack_from("<i", data, offset)
    doc = bson.decode(data[offset : offset + size], CODEC_OPTIONS)
    return doc, offset + size


def parse_op_msg(header: Header, payload: bytes) -> Command:
    """Decode an OP_MSG: one kind-0 body plus kind-1 document sequences merged into it."""
    (flags,) = struct.unpack_from("<I", payload, 0)
    end = len(payload) - (4 if flags & FLAG_CHECKSUM_PRESENT else 0)
    offset = 4
    body: Document | None = None
    sequences: dict[str, list[Document]] = {}
    while offset < end:
        kind = payload[offset]
        offset += 1
        if kind == 0:
            body, offset = _decode_one(payload, offset)
        elif kind == 1:
            (size,) = struct.unpack_from("<i", payload, offset)
            section_end = offset + size
            name, pos = _cstring(payload, offset + 4)
            docs: list[Document] = []
            while pos < section_end:
                doc, pos = _decode_one(payload, pos)
                docs.append(doc)
            sequences.setdefault(name, []).extend(docs)
            offset = section_end
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if body is None:
        raise ProtocolError("OP_MSG without a body section")
    body.update(sequences)
    return Command(header.request_id, OP_MSG, body, not flags & FLAG_MORE_TO_COME)


def parse_op_query(header: Header, payload: bytes) -> Command:
    """Decode a legacy OP_QUERY; only commands on ``<db>.$cmd`` are meaningful here."""
    collection, offset = _cstring(payload, 4)
    offset += 8  # numberToSkip, numberToReturn
    query, _ = _decode_one(payload, offset)
    if "$query" in query:  # the legacy wrapped form
        query = dict(query["$query"])
    database, _, rest = collection.partition(".")
    if rest != "$cmd":
        raise ProtocolError(f"OP_QUERY on {collection!r} is not supported")
    query.setdefault("$db", database)
    return Command(header.request_id, OP_QUERY, query, expects_reply=True)


def parse_message(header: Header, payload: bytes) -> Command:
    """Decode the payload that follows ``header``."""
    if header.op_code == OP_MSG:
        return parse_op_msg(header, payload)
    if header.op_code == OP_QUERY:
        return parse_op_query(header, payload)
    raise ProtocolError(f"unsupported opcode {header.op_code}")


def encode_reply(request: Command, reply: Document, request_id: int) -> bytes:
    """Frame ``reply`` in the message type the request was made with."""
    doc = bson.encode(reply, codec_options=CODEC_OPTIONS)
    if request.op_code == OP_QUERY:
        body = struct.pack("<iqii", 0, 0, 0, 1) + doc
        op_code = OP_REPLY
    else:
        body = struct.pack("<IB", 0, 0) + doc
        op_code = OP_MSG
    header = _HEADER.pack(HEADER_SIZE + len(body), request_id, request.request_id, op_code)
    return header + body

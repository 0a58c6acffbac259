#!/usr/bin/env python3
"""In-memory fake of the Google Cloud Storage XML API, as used by the Rust
crate ``object_store`` 0.14 (feature ``gcp``).

No installable GCS emulator handles object_store's XML-API writes (S3-style
multipart uploads, ``x-goog-if-generation-match`` preconditions, ...), so the
litecar tests own this fake.

Usage::

    python3 tests/fakes/fake_gcs.py --port 0 [--page-size N]

Binds 127.0.0.1 only. Once ready it prints exactly one line to stdout::

    listening on http://127.0.0.1:PORT

and nothing else ever goes to stdout. SIGTERM / SIGINT stop it cleanly (exit 0).

Point object_store at it with a service-account JSON file::

    {"gcs_base_url": "http://127.0.0.1:PORT", "disable_oauth": true,
     "client_email": "", "private_key": "", "private_key_id": ""}

and ``GoogleCloudStorageBuilder::new().with_bucket_name(B)
.with_service_account_path(FILE)``. (All three of client_email, private_key and
private_key_id must be present -- they are non-optional serde fields -- but may
be empty when disable_oauth is true. The GCS builder allows plain http by
default, no ClientOptions needed.)

Supported (any bucket name; buckets spring into existence on first write):

* ``PUT /b/o``                  upload; ``x-goog-if-generation-match`` (0 = must
                                not exist), ``x-goog-if-metageneration-match``
* ``PUT /b/o`` + ``x-goog-copy-source: b2/o2``   server-side copy
* ``GET|HEAD /b/o``             Range (``a-b``, ``a-``, ``-n``), If-Match,
                                If-None-Match, If-Modified-Since,
                                If-Unmodified-Since, ``?generation=N``
* ``DELETE /b/o``               204, 404 if missing (like real GCS)
* ``GET /b?list-type=2``        prefix, delimiter, max-keys, continuation-token,
                                start-after
* ``POST /b/o?uploads``, ``PUT /b/o?partNumber=N&uploadId=X``,
  ``POST /b/o?uploadId=X`` (CompleteMultipartUpload),
  ``DELETE /b/o?uploadId=X`` (abort), ``GET /b?uploads`` (list uploads)
* ``PUT|HEAD|DELETE /b`` (bucket create / exists / delete), ``GET /`` (buckets)

Overwritten/deleted objects are kept as noncurrent generations (like a bucket
with Object Versioning enabled) so ``?generation=N`` reads work; see
``--noncurrent-versions``.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import email.utils
import hashlib
import http.server
import json
import signal
import socket
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import OrderedDict
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
READ_CHUNK = 1 << 20

XMLNS = "http://doc.s3.amazonaws.com/2006-03-01"


# --------------------------------------------------------------------------
# Errors & small helpers
# --------------------------------------------------------------------------


class GcsError(Exception):
    """An error response with a GCS-style XML body."""

    def __init__(self, status: int, code: str, message: str, details: str = "",
                 headers: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def bad_request(message: str, code: str = "InvalidArgument") -> GcsError:
    return GcsError(400, code, message)


def no_such_key(bucket: str, key: str) -> GcsError:
    return GcsError(404, "NoSuchKey", "The specified key does not exist.",
                    f"No such object: {bucket}/{key}")


def precondition_failed(details: str = "") -> GcsError:
    return GcsError(412, "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold.",
                    details)


def _xml_char_ok(cp: int) -> bool:
    return (cp in (0x9, 0xA, 0xD) or 0x20 <= cp <= 0xD7FF
            or 0xE000 <= cp <= 0xFFFD or 0x10000 <= cp <= 0x10FFFF)


def xml_text(s: str) -> str:
    """Escape text for an XML element body."""
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if all(_xml_char_ok(ord(c)) for c in s):
        return s
    return "".join(c if _xml_char_ok(ord(c)) else f"&#x{ord(c):X};" for c in s)


def el(tag: str, value) -> str:
    return f"<{tag}>{xml_text(str(value))}</{tag}>"


def xml_doc(body: str) -> bytes:
    return ("<?xml version='1.0' encoding='UTF-8'?>" + body).encode("utf-8")


def http_date(ts: float) -> str:
    """RFC 1123 date, e.g. 'Tue, 15 Nov 1994 08:12:31 GMT'."""
    return email.utils.formatdate(ts, usegmt=True)


def rfc3339_ms(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # RFC 9110: invalid dates are ignored
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def strip_etag(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
        tag = tag[1:-1]
    return tag


def etag_list_matches(header: str, etag: str) -> bool:
    """Does an If-Match / If-None-Match header value match ``etag``?"""
    want = strip_etag(etag)
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*" or strip_etag(item) == want:
            return True
    return False


def parse_int_header(headers, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit():
        raise bad_request(f"Invalid value for header {name}: {raw!r}")
    return int(raw)


def strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------

METADATA_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
)


class Obj:
    __slots__ = ("data", "etag", "generation", "metageneration", "mtime",
                 "meta", "custom", "storage_class", "md5_b64")

    def __init__(self, data: bytes, etag: str, generation: int, mtime: float,
                 meta: dict, custom: dict, storage_class: str,
                 md5_b64: str | None):
        self.data = data
        self.etag = etag
        self.generation = generation
        self.metageneration = 1
        self.mtime = mtime
        self.meta = meta          # standard headers (Content-Type, ...)
        self.custom = custom      # x-goog-meta-* suffix -> value
        self.storage_class = storage_class
        self.md5_b64 = md5_b64

    @property
    def size(self) -> int:
        return len(self.data)


class Upload:
    __slots__ = ("bucket", "key", "meta", "custom", "storage_class", "parts",
                 "initiated")

    def __init__(self, bucket: str, key: str, meta: dict, custom: dict,
                 storage_class: str):
        self.bucket = bucket
        self.key = key
        self.meta = meta
        self.custom = custom
        self.storage_class = storage_class
        self.parts: dict[int, tuple[bytes, str]] = {}
        self.initiated = time.time()


class Bucket:
    def __init__(self, name: str):
        self.name = name
        self.created = time.time()
        self.objects: dict[str, Obj] = {}
        self.sorted_keys: list[str] = []
        # key -> OrderedDict[generation -> Obj] of noncurrent versions
        self.noncurrent: dict[str, OrderedDict] = {}


class Store:
    def __init__(self, page_size: int, min_part_size: int,
                 max_noncurrent: int):
        self.lock = threading.RLock()
        self.buckets: dict[str, Bucket] = {}
        self.uploads: dict[str, Upload] = {}
        self.page_size = page_size
        self.min_part_size = min_part_size
        self.max_noncurrent = max_noncurrent
        self._last_gen = 0

    # -- helpers (call with lock held) ---------------------------------------

    def next_generation(self) -> int:
        gen = max(self._last_gen + 1, time.time_ns() // 1000)
        self._last_gen = gen
        return gen

    def bucket(self, name: str, create: bool = False) -> Bucket | None:
        b = self.buckets.get(name)
        if b is None and create:
            b = Bucket(name)
            self.buckets[name] = b
        return b

    def live(self, bucket: str, key: str) -> Obj | None:
        b = self.buckets.get(bucket)
        return b.objects.get(key) if b else None

    def lookup(self, bucket: str, key: str, generation: int | None) -> Obj:
        b = self.buckets.get(bucket)
        obj = b.objects.get(key) if b else None
        if generation is None:
            if obj is None:
                raise no_such_key(bucket, key)
            return obj
        if obj is not None and obj.generation == generation:
            return obj
        old = b.noncurrent.get(key) if b else None
        if old is not None and generation in old:
            return old[generation]
        raise no_such_key(bucket, key)

    def _retire(self, b: Bucket, key: str, obj: Obj) -> None:
        if self.max_noncurrent <= 0:
            return
        versions = b.noncurrent.setdefault(key, OrderedDict())
        versions[obj.generation] = obj
        while len(versions) > self.max_noncurrent:
            versions.popitem(last=False)

    def check_write_preconditions(self, bucket: str, key: str, headers) -> None:
        gen_match = parse_int_header(headers, "x-goog-if-generation-match")
        meta_match = parse_int_header(headers, "x-goog-if-metageneration-match")
        current = self.live(bucket, key)
        if gen_match is not None:
            if gen_match == 0:
                if current is not None:
                    raise precondition_failed(
                        f"x-goog-if-generation-match: 0 but {key} exists "
                        f"(generation {current.generation})")
            elif current is None or current.generation != gen_match:
                have = "missing" if current is None else current.generation
                raise precondition_failed(
                    f"x-goog-if-generation-match: {gen_match}, current: {have}")
        if meta_match is not None:
            if current is None or current.metageneration != meta_match:
                raise precondition_failed("x-goog-if-metageneration-match failed")

    def store_object(self, bucket: str, key: str, obj: Obj) -> None:
        b = self.bucket(bucket, create=True)
        old = b.objects.get(key)
        if old is None:
            bisect.insort(b.sorted_keys, key)
        else:
            self._retire(b, key, old)
        b.objects[key] = obj

    def remove_object(self, bucket: str, key: str) -> Obj:
        b = self.buckets.get(bucket)
        obj = b.objects.pop(key, None) if b else None
        if obj is None:
            raise no_such_key(bucket, key)
        i = bisect.bisect_left(b.sorted_keys, key)
        if i < len(b.sorted_keys) and b.sorted_keys[i] == key:
            del b.sorted_keys[i]
        self._retire(b, key, obj)
        return obj


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------


def encode_token(kind: str, value: str) -> str:
    raw = json.dumps({kind: value}).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        d = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if isinstance(d, dict) and len(d) == 1:
            (kind, value), = d.items()
            if kind in ("k", "p") and isinstance(value, str):
                return kind, value
    except (ValueError, UnicodeError, TypeError):
        pass
    raise bad_request("Invalid continuation token.")


def list_bucket(store: Store, bucket: str, q: dict) -> bytes:
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    start_after = q.get("start-after")
    token = q.get("continuation-token")
    if "max-keys" in q:
        raw = q["max-keys"].strip()
        if not raw.isdigit():
            raise bad_request(f"Invalid max-keys: {raw!r}")
        max_keys = min(int(raw), MAX_PAGE_SIZE)
    else:
        max_keys = store.page_size

    resume_kind, resume_value = (None, None)
    if token is not None:
        resume_kind, resume_value = decode_token(token)

    contents: list[Obj | str] = []
    contents_keys: list[str] = []
    prefixes: list[str] = []
    truncated = False
    last_kind, last_value = None, None

    with store.lock:
        b = store.buckets.get(bucket)
        keys = b.sorted_keys if b else []
        lo = bisect.bisect_left(keys, prefix)
        for marker in (start_after, resume_value):
            if marker is not None:
                lo = max(lo, bisect.bisect_right(keys, marker))
        i = lo
        n = len(keys)
        while i < n:
            key = keys[i]
            if not key.startswith(prefix):
                break
            if resume_kind == "p" and key.startswith(resume_value):
                i += 1
                continue
            cp = None
            if delimiter is not None:
                j = key.find(delimiter, len(prefix))
                if j >= 0:
                    cp = key[: j + len(delimiter)]
            if len(contents) + len(prefixes) >= max_keys:
                truncated = max_keys > 0
                break
            if cp is not None:
                prefixes.append(cp)
                last_kind, last_value = "p", cp
                # skip every key rolled up into this common prefix
                i = bisect.bisect_left(keys, cp, i)
                while i < n and keys[i].startswith(cp):
                    i += 1
                continue
            contents.append(b.objects[key])
            contents_keys.append(key)
            last_kind, last_value = "k", key
            i += 1

    parts = [f'<ListBucketResult xmlns="{XMLNS}">', el("Name", bucket),
             el("Prefix", prefix), el("MaxKeys", max_keys)]
    if delimiter is not None:
        parts.append(el("Delimiter", delimiter))
    if start_after is not None:
        parts.append(el("StartAfter", start_after))
    if token is not None:
        parts.append(el("ContinuationToken", token))
    parts.append(el("KeyCount", len(contents) + len(prefixes)))
    parts.append(el("IsTruncated", "true" if truncated else "false"))
    if truncated and last_kind is not None:
        parts.append(el("NextContinuationToken",
                        encode_token(last_kind, last_value)))
    # All <Contents> must be contiguous, then all <CommonPrefixes>: object_store
    # deserialises them with quick_xml into Vecs, which rejects interleaving.
    for key, obj in zip(contents_keys, contents):
        parts.append(
            "<Contents>" + el("Key", key) + el("Generation", obj.generation)
            + el("MetaGeneration", obj.metageneration)
            + el("LastModified", rfc3339_ms(obj.mtime)) + el("ETag", obj.etag)
            + el("Size", obj.size) + el("StorageClass", obj.storage_class)
            + "</Contents>")
    for cp in prefixes:
        parts.append("<CommonPrefixes>" + el("Prefix", cp) + "</CommonPrefixes>")
    parts.append("</ListBucketResult>")
    return xml_doc("".join(parts))


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, body: bytes = b"", headers=None,
                 content_type: str | None = None):
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = list(headers or [])
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))


XML_CT = "application/xml; charset=UTF-8"


def error_response(err: GcsError) -> Response:
    body = "<Error>" + el("Code", err.code) + el("Message", err.message)
    if err.details:
        body += el("Details", err.details)
    body += "</Error>"
    return Response(err.status, xml_doc(body), list(err.headers.items()), XML_CT)


def object_headers(obj: Obj) -> list[tuple[str, str]]:
    h = [
        ("ETag", obj.etag),
        ("Last-Modified", http_date(obj.mtime)),
        ("x-goog-generation", str(obj.generation)),
        ("x-goog-metageneration", str(obj.metageneration)),
        ("x-goog-stored-content-length", str(obj.size)),
        ("x-goog-stored-content-encoding", "identity"),
        ("x-goog-storage-class", obj.storage_class),
        ("Accept-Ranges", "bytes"),
    ]
    if obj.md5_b64:
        h.append(("x-goog-hash", f"md5={obj.md5_b64}"))
    for name in METADATA_HEADERS:
        if name in obj.meta:
            h.append((name, obj.meta[name]))
    for k, v in obj.custom.items():
        h.append((f"x-goog-meta-{k}", v))
    return h


def write_result_headers(obj: Obj) -> list[tuple[str, str]]:
    h = [
        ("ETag", obj.etag),
        ("x-goog-generation", str(obj.generation)),
        ("x-goog-metageneration", str(obj.metageneration)),
        ("x-goog-stored-content-length", str(obj.size)),
    ]
    if obj.md5_b64:
        h.append(("x-goog-hash", f"md5={obj.md5_b64}"))
    return h


def metadata_from_headers(headers) -> tuple[dict, dict, str]:
    meta = {}
    for name in METADATA_HEADERS:
        v = headers.get(name)
        if v is not None:
            meta[name] = v
    if "Content-Type" not in meta:
        meta["Content-Type"] = "application/octet-stream"
    custom = {}
    for name, value in headers.items():
        if name.lower().startswith("x-goog-meta-") and len(name) > 12:
            custom[name[12:]] = value
    storage_class = headers.get("x-goog-storage-class") or "STANDARD"
    return meta, custom, storage_class


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Returns inclusive (first, last); None if unsatisfiable.
    Raises GcsError(400) if unparseable."""
    h = header.strip()
    unit, sep, spec = h.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise bad_request(f"Invalid Range header: {header!r}", "InvalidRange")
    spec = spec.strip()
    if "," in spec:
        raise bad_request("Multiple byte ranges are not supported.", "InvalidRange")
    first_s, dash, last_s = spec.partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or (first_s and not first_s.isdigit()) or (
            last_s and not last_s.isdigit()) or (not first_s and not last_s):
        raise bad_request(f"Invalid Range header: {header!r}", "InvalidRange")
    if not first_s:  # suffix range: last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        raise bad_request(f"Invalid Range header: {header!r}", "InvalidRange")
    if first >= size:
        return None
    return first, min(last, size - 1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGCS/1.0"
    # Small responses otherwise stall ~40ms on Nagle + delayed ACK.
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version
    store: Store = None  # type: ignore[assignment]
    verbose = False

    # -- plumbing ------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        if self.verbose:
            sys.stderr.write("fake_gcs: " + (format % args) + "\n")

    def send_error(self, code, message=None, explain=None):
        """Used by BaseHTTPRequestHandler for malformed requests; XML body."""
        try:
            short, _long = self.responses.get(code, ("Error", ""))
        except Exception:  # pragma: no cover
            short = "Error"
        err = GcsError(code, "InvalidArgument" if code == 400 else
                       short.replace(" ", ""), message or short)
        self.close_connection = True
        # Malformed request lines leave request_version at 'HTTP/0.9', which
        # would make the stdlib omit the status line; always answer as 1.1.
        self.request_version = "HTTP/1.1"
        resp = error_response(err)
        try:
            self._send(resp, head=getattr(self, "command", "") == "HEAD")
        except OSError:
            pass

    def _send(self, resp: Response, head: bool = False) -> None:
        self.send_response(resp.status)
        has_len = False
        for k, v in resp.headers:
            if k.lower() == "content-length":
                has_len = True
            self.send_header(k, v)
        if resp.status not in (204, 304) and not has_len:
            self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Like end_headers(), but send small bodies in the same write.
        self._headers_buffer.append(b"\r\n")
        body = resp.body if not head and resp.status not in (204, 304) else b""
        if 0 < len(body) <= 65536:
            self._headers_buffer.append(body)
            body = b""
        self.flush_headers()
        if body:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return self._read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        cl = cl.strip()
        if not cl.isdigit():
            self.close_connection = True
            raise bad_request(f"Invalid Content-Length: {cl!r}")
        remaining = int(cl)
        chunks = []
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, READ_CHUNK))
            if not chunk:
                self.close_connection = True
                raise bad_request("Request body shorter than Content-Length.",
                                  "IncompleteBody")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise bad_request("Malformed chunked request body.")
            if size == 0:
                # trailers
                while True:
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                return b"".join(chunks)
            remaining = size
            while remaining > 0:
                c = self.rfile.read(min(remaining, READ_CHUNK))
                if not c:
                    self.close_connection = True
                    raise bad_request("Truncated chunked request body.")
                chunks.append(c)
                remaining -= len(c)
            self.rfile.readline(65537)

    def _dispatch(self) -> None:
        head = self.command == "HEAD"
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 requests are not supported.")
            return
        try:
            # Always consume the request body so keep-alive stays in sync.
            body = self._read_body()
            resp = self._route(body)
        except GcsError as e:
            resp = error_response(e)
        except Exception as e:  # never crash: report a 500 with an XML body
            if self.verbose:
                import traceback
                traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            resp = error_response(GcsError(500, "InternalError",
                                           "Internal error in fake GCS.",
                                           f"{type(e).__name__}: {e}"))
        self._send(resp, head=head)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch
    do_PATCH = do_OPTIONS = _dispatch

    # -- routing -------------------------------------------------------------

    def _route(self, body: bytes) -> Response:
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            raw_path, raw_query = parts.path, parts.query
        else:
            raw_path, _, raw_query = target.partition("?")
            raw_query = raw_query.partition("#")[0]
        if not raw_path.startswith("/"):
            raise bad_request(f"Invalid request target: {target!r}")
        try:
            q = dict(parse_qsl(raw_query, keep_blank_values=True,
                               errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise bad_request("Malformed query string.")
        bucket_raw, _, key_raw = raw_path[1:].partition("/")
        try:
            bucket = unquote(bucket_raw, errors="strict")
            key = unquote(key_raw, errors="strict")
        except UnicodeDecodeError:
            raise bad_request("Object name is not valid UTF-8.",
                              "InvalidObjectName")
        m = self.command
        if not bucket:
            if m in ("GET", "HEAD"):
                return self._list_buckets()
            raise GcsError(405, "MethodNotAllowed",
                           f"{m} is not allowed on the service endpoint.")
        if not key:
            return self._bucket_op(m, bucket, q, body)
        if "\r" in key or "\n" in key or len(key.encode("utf-8")) > 1024:
            raise bad_request("Invalid object name.", "InvalidObjectName")

        if m in ("GET", "HEAD"):
            return self._get_object(bucket, key, q, head=(m == "HEAD"))
        if m == "PUT":
            if "uploadId" in q or "partNumber" in q:
                return self._put_part(bucket, key, q, body)
            if self.headers.get("x-goog-copy-source") is not None:
                return self._copy_object(bucket, key, body)
            return self._put_object(bucket, key, body)
        if m == "POST":
            if "uploads" in q:
                return self._initiate_upload(bucket, key)
            if "uploadId" in q:
                return self._complete_upload(bucket, key, q["uploadId"], body)
            raise bad_request("POST on an object requires ?uploads or ?uploadId.")
        if m == "DELETE":
            if "uploadId" in q:
                return self._abort_upload(bucket, key, q["uploadId"])
            return self._delete_object(bucket, key, q)
        raise GcsError(405, "MethodNotAllowed",
                       f"{m} is not allowed on objects.")

    # -- service / bucket operations ------------------------------------------

    def _list_buckets(self) -> Response:
        with self.store.lock:
            names = sorted(self.store.buckets.items())
        body = ('<ListAllMyBucketsResult xmlns="' + XMLNS + '"><Buckets>'
                + "".join("<Bucket>" + el("Name", n)
                          + el("CreationDate", rfc3339_ms(b.created))
                          + "</Bucket>" for n, b in names)
                + "</Buckets></ListAllMyBucketsResult>")
        return Response(200, xml_doc(body), content_type=XML_CT)

    def _bucket_op(self, m: str, bucket: str, q: dict, body: bytes) -> Response:
        store = self.store
        if m == "GET":
            if "uploads" in q:
                return self._list_uploads(bucket, q)
            # A never-written bucket lists as empty rather than 404.
            return Response(200, list_bucket(store, bucket, q),
                            content_type=XML_CT)
        if m == "HEAD":
            with store.lock:
                exists = bucket in store.buckets
            if not exists:
                raise GcsError(404, "NoSuchBucket",
                               "The specified bucket does not exist.")
            return Response(200)
        if m == "PUT":
            with store.lock:
                store.bucket(bucket, create=True)
            return Response(200)
        if m == "DELETE":
            with store.lock:
                b = store.buckets.get(bucket)
                if b is None:
                    raise GcsError(404, "NoSuchBucket",
                                   "The specified bucket does not exist.")
                if b.objects:
                    raise GcsError(409, "BucketNotEmpty",
                                   "The bucket you tried to delete is not empty.")
                del store.buckets[bucket]
            return Response(204)
        raise GcsError(405, "MethodNotAllowed",
                       f"{m} is not allowed on buckets.")

    def _list_uploads(self, bucket: str, q: dict) -> Response:
        prefix = q.get("prefix", "")
        with self.store.lock:
            ups = sorted(((u.key, uid, u.initiated)
                          for uid, u in self.store.uploads.items()
                          if u.bucket == bucket and u.key.startswith(prefix)))
        body = (f'<ListMultipartUploadsResult xmlns="{XMLNS}">'
                + el("Bucket", bucket) + el("Prefix", prefix)
                + el("IsTruncated", "false")
                + "".join("<Upload>" + el("Key", k) + el("UploadId", uid)
                          + el("Initiated", rfc3339_ms(t)) + "</Upload>"
                          for k, uid, t in ups)
                + "</ListMultipartUploadsResult>")
        return Response(200, xml_doc(body), content_type=XML_CT)

    # -- objects -----------------------------------------------------------------

    def _get_object(self, bucket: str, key: str, q: dict, head: bool) -> Response:
        generation = None
        if "generation" in q:
            g = q["generation"].strip()
            if not g.isdigit():
                raise bad_request(f"Invalid generation: {g!r}")
            generation = int(g)
        h = self.headers
        with self.store.lock:
            obj = self.store.lookup(bucket, key, generation)
        gen_match = parse_int_header(h, "x-goog-if-generation-match")
        if gen_match is not None and gen_match != obj.generation:
            raise precondition_failed("x-goog-if-generation-match failed")
        meta_match = parse_int_header(h, "x-goog-if-metageneration-match")
        if meta_match is not None and meta_match != obj.metageneration:
            raise precondition_failed("x-goog-if-metageneration-match failed")

        # RFC 9110 section 13.2.2 evaluation order. Dates compare at 1s resolution.
        mtime_s = int(obj.mtime)
        if_match = h.get("If-Match")
        if if_match is not None:
            if not etag_list_matches(if_match, obj.etag):
                raise precondition_failed("If-Match failed")
        else:
            ius = parse_http_date(h.get("If-Unmodified-Since"))
            if ius is not None and mtime_s > ius:
                raise precondition_failed("If-Unmodified-Since failed")
        not_modified = False
        if_none_match = h.get("If-None-Match")
        if if_none_match is not None:
            not_modified = etag_list_matches(if_none_match, obj.etag)
        else:
            ims = parse_http_date(h.get("If-Modified-Since"))
            not_modified = ims is not None and mtime_s <= ims
        if not_modified:
            return Response(304, b"", [("ETag", obj.etag),
                                       ("Last-Modified", http_date(obj.mtime)),
                                       ("x-goog-generation", str(obj.generation))])

        headers = object_headers(obj)
        size = obj.size
        range_header = h.get("Range")
        if range_header is not None:
            rng = parse_range(range_header, size)
            if rng is None:
                err = GcsError(416, "InvalidRange",
                               "The requested range cannot be satisfied.",
                               f"Range: {range_header} (object size {size})",
                               {"Content-Range": f"bytes */{size}"})
                raise err
            first, last = rng
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
            headers.append(("Content-Length", str(last - first + 1)))
            body = b"" if head else obj.data[first:last + 1]
            return Response(206, body, headers)
        headers.append(("Content-Length", str(size)))
        return Response(200, b"" if head else obj.data, headers)

    def _put_object(self, bucket: str, key: str, body: bytes) -> Response:
        meta, custom, sc = metadata_from_headers(self.headers)
        md5 = hashlib.md5(body)
        etag = f'"{md5.hexdigest()}"'
        md5_b64 = base64.b64encode(md5.digest()).decode("ascii")
        expect = self.headers.get("Content-MD5")
        if expect is not None and expect.strip() != md5_b64:
            raise bad_request("The Content-MD5 you specified did not match what "
                              "we received.", "BadDigest")
        with self.store.lock:
            self.store.check_write_preconditions(bucket, key, self.headers)
            obj = Obj(body, etag, self.store.next_generation(), time.time(),
                      meta, custom, sc, md5_b64)
            self.store.store_object(bucket, key, obj)
        return Response(200, b"", write_result_headers(obj))

    def _copy_object(self, bucket: str, key: str, body: bytes) -> Response:
        if body:
            raise bad_request("A copy request must not have a body.")
        src = self.headers.get("x-goog-copy-source", "").strip()
        try:
            src = unquote(src.partition("?")[0], errors="strict")
        except UnicodeDecodeError:
            raise bad_request("Invalid x-goog-copy-source.")
        src_bucket, _, src_key = src.lstrip("/").partition("/")
        if not src_bucket or not src_key:
            raise bad_request(f"Invalid x-goog-copy-source: {src!r}")
        src_gen = parse_int_header(self.headers, "x-goog-copy-source-generation")
        directive = (self.headers.get("x-goog-metadata-directive") or "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise bad_request(f"Invalid x-goog-metadata-directive: {directive!r}")
        with self.store.lock:
            source = self.store.lookup(src_bucket, src_key, src_gen)
            sgm = parse_int_header(self.headers,
                                   "x-goog-copy-source-if-generation-match")
            if sgm is not None and sgm != source.generation:
                raise precondition_failed(
                    "x-goog-copy-source-if-generation-match failed")
            self.store.check_write_preconditions(bucket, key, self.headers)
            if directive == "REPLACE":
                meta, custom, sc = metadata_from_headers(self.headers)
            else:
                meta, custom = dict(source.meta), dict(source.custom)
                sc = self.headers.get("x-goog-storage-class") or source.storage_class
            obj = Obj(source.data, source.etag, self.store.next_generation(),
                      time.time(), meta, custom, sc, source.md5_b64)
            self.store.store_object(bucket, key, obj)
        body = xml_doc("<CopyObjectResult>"
                       + el("LastModified", rfc3339_ms(obj.mtime))
                       + el("ETag", obj.etag) + "</CopyObjectResult>")
        return Response(200, body, write_result_headers(obj), XML_CT)

    def _delete_object(self, bucket: str, key: str, q: dict) -> Response:
        generation = None
        if "generation" in q:
            g = q["generation"].strip()
            if not g.isdigit():
                raise bad_request(f"Invalid generation: {g!r}")
            generation = int(g)
        with self.store.lock:
            store = self.store
            obj = store.live(bucket, key)
            gen_match = parse_int_header(self.headers, "x-goog-if-generation-match")
            if gen_match is not None:
                if obj is None:
                    raise no_such_key(bucket, key)
                if obj.generation != gen_match:
                    raise precondition_failed("x-goog-if-generation-match failed")
            if generation is not None and (obj is None
                                           or obj.generation != generation):
                b = store.buckets.get(bucket)
                old = b.noncurrent.get(key) if b else None
                if old is None or generation not in old:
                    raise no_such_key(bucket, key)
                del old[generation]
                return Response(204)
            store.remove_object(bucket, key)
        return Response(204)

    # -- multipart ---------------------------------------------------------------

    def _initiate_upload(self, bucket: str, key: str) -> Response:
        meta, custom, sc = metadata_from_headers(self.headers)
        upload_id = "fake-" + uuid.uuid4().hex
        with self.store.lock:
            self.store.uploads[upload_id] = Upload(bucket, key, meta, custom, sc)
        body = xml_doc(f'<InitiateMultipartUploadResult xmlns="{XMLNS}">'
                       + el("Bucket", bucket) + el("Key", key)
                       + el("UploadId", upload_id)
                       + "</InitiateMultipartUploadResult>")
        return Response(200, body, content_type=XML_CT)

    def _get_upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        up = self.store.uploads.get(upload_id)
        if up is None or up.bucket != bucket or up.key != key:
            raise GcsError(404, "NoSuchUpload",
                           "The specified multipart upload does not exist.",
                           f"uploadId={upload_id}")
        return up

    def _put_part(self, bucket: str, key: str, q: dict, body: bytes) -> Response:
        upload_id = q.get("uploadId")
        pn = (q.get("partNumber") or "").strip()
        if not upload_id:
            raise bad_request("Missing uploadId.")
        if not pn.isdigit() or not 1 <= int(pn) <= MAX_PART_NUMBER:
            raise bad_request(f"Invalid partNumber: {pn!r} (must be 1..10000).")
        if self.headers.get("x-goog-copy-source") is not None:
            raise GcsError(501, "NotImplemented",
                           "Upload part copy is not supported by the fake.")
        md5 = hashlib.md5(body)
        etag = f'"{md5.hexdigest()}"'
        with self.store.lock:
            up = self._get_upload(bucket, key, upload_id)
            up.parts[int(pn)] = (body, etag)
        return Response(200, b"", [("ETag", etag)])

    def _complete_upload(self, bucket: str, key: str, upload_id: str,
                         body: bytes) -> Response:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise bad_request(f"Malformed CompleteMultipartUpload XML: {e}",
                              "MalformedXML")
        if strip_ns(root.tag) != "CompleteMultipartUpload":
            raise bad_request("Expected <CompleteMultipartUpload>.", "MalformedXML")
        requested: list[tuple[int, str]] = []
        for part in root:
            if strip_ns(part.tag) != "Part":
                raise bad_request(f"Unexpected element <{strip_ns(part.tag)}>.",
                                  "MalformedXML")
            fields = {strip_ns(c.tag): (c.text or "").strip() for c in part}
            pn, tag = fields.get("PartNumber", ""), fields.get("ETag")
            if not pn.isdigit() or tag is None:
                raise bad_request("Each <Part> needs <PartNumber> and <ETag>.",
                                  "MalformedXML")
            requested.append((int(pn), tag))
        if not requested:
            raise bad_request("CompleteMultipartUpload lists no parts.",
                              "MalformedXML")
        for (a, _), (b, _) in zip(requested, requested[1:]):
            if b <= a:
                raise bad_request("Parts must be listed in ascending PartNumber "
                                  "order.", "InvalidPartOrder")
        with self.store.lock:
            up = self._get_upload(bucket, key, upload_id)
            chunks = []
            digests = b""
            for idx, (pn, tag) in enumerate(requested):
                have = up.parts.get(pn)
                if have is None or strip_etag(have[1]) != strip_etag(tag):
                    raise bad_request(
                        f"Part {pn} was not uploaded or its ETag does not match.",
                        "InvalidPart")
                data = have[0]
                if (idx < len(requested) - 1
                        and len(data) < self.store.min_part_size):
                    raise bad_request(
                        f"Part {pn} is {len(data)} bytes; every part but the "
                        f"last must be at least {self.store.min_part_size}.",
                        "EntityTooSmall")
                chunks.append(data)
                digests += bytes.fromhex(strip_etag(have[1]))
            self.store.check_write_preconditions(bucket, key, self.headers)
            etag = f'"{hashlib.md5(digests).hexdigest()}-{len(requested)}"'
            obj = Obj(b"".join(chunks), etag, self.store.next_generation(),
                      time.time(), up.meta, up.custom, up.storage_class, None)
            self.store.store_object(bucket, key, obj)
            del self.store.uploads[upload_id]
        resp = xml_doc(f'<CompleteMultipartUploadResult xmlns="{XMLNS}">'
                       + el("Location", f"/{bucket}/{key}")
                       + el("Bucket", bucket) + el("Key", key)
                       + el("ETag", etag) + "</CompleteMultipartUploadResult>")
        return Response(200, resp, write_result_headers(obj), XML_CT)

    def _abort_upload(self, bucket: str, key: str, upload_id: str) -> Response:
        with self.store.lock:
            self._get_upload(bucket, key, upload_id)
            del self.store.uploads[upload_id]
        return Response(204)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # object_store fans out (e.g. 10 parallel deletes)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return
        if Handler.verbose:
            super().handle_error(request, client_address)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="In-memory fake GCS XML API server for object_store tests.")
    ap.add_argument("--port", type=int, default=0,
                    help="TCP port on 127.0.0.1 (0 = pick a free one)")
    ap.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE,
                    help="list page size used when the client sends no max-keys "
                         "(object_store's list()/list_with_delimiter() never do); "
                         "set small to force pagination (default 1000)")
    ap.add_argument("--min-part-size", type=int, default=MIN_PART_SIZE,
                    help="minimum size of every multipart part except the last, "
                         "enforced at complete time like GCS (default 5 MiB; "
                         "0 disables)")
    ap.add_argument("--noncurrent-versions", type=int, default=10,
                    help="noncurrent generations kept per object for "
                         "?generation=N reads (default 10; 0 = unversioned "
                         "bucket)")
    ap.add_argument("--verbose", action="store_true",
                    help="log requests and handler errors to stderr")
    args = ap.parse_args(argv)
    if args.page_size < 1:
        ap.error("--page-size must be >= 1")
    if not 0 <= args.port <= 65535:
        ap.error("--port must be in 0..65535")

    Handler.store = Store(args.page_size, max(0, args.min_part_size),
                          max(0, args.noncurrent_versions))
    Handler.verbose = args.verbose
    server = Server(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]

    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever,
                              kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    sys.stdout.write(f"listening on http://127.0.0.1:{port}\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

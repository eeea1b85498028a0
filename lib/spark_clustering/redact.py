"""One redaction for everything the package saves or logs: credentials never reach a file.

:func:`redact` walks any JSON-like value (reader options, a spec, a config, a summary) and
replaces the value of every key that looks like a credential (:func:`is_secret_key`) with
:data:`REDACTED`; :func:`redact_text` cleans free text (URIs, JDBC URLs, error messages) of
user-info passwords, ``password=...`` pairs and AWS access key ids. Tracking (parameters, tags,
failures), the preparation files, ``summary.json`` and the jobs' error lines all go through
these two functions. This module imports nothing from the package, so every layer can use it.

Examples
--------
>>> redact({"user": "ana", "password": "hunter2"})
{'user': 'ana', 'password': '__REDACTED__'}
>>> redact_text("jdbc:postgresql://db:5432/shop?user=ana&password=hunter2")
'jdbc:postgresql://db:5432/shop?user=ana&password=__REDACTED__'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What replaces a secret: tag-safe on SageMaker (no ``*`` there) and easy to grep for.
REDACTED = "__REDACTED__"

#: Substrings of a key (lower-cased, separators removed) that mark a credential.
_SECRET_MARKERS = (
    "secret",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "token",
    "accesskey",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "sessionkey",
)
#: Keys that contain a marker but name a class or a mechanism, not a credential: a credentials
#: *provider* (``fs.s3a.aws.credentials.provider``) is a class name the reader needs.
_NOT_SECRET_SUFFIXES = ("provider", "providers", "type", "mechanism", "file", "path")

#: ``scheme://user:password@`` or ``scheme://token@``: the whole user-info goes (a user name can
#: be an access key id).
_URL_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@")
#: the ``key=`` of ``key=value`` in a URL query, a JDBC property list (``;password=x``) or a
#: command line, and the value after it
_KEY_EQ_RE = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]+)=")
_VALUE_RE = re.compile(r"[^&;,\s\"']*")
_AWS_KEY_ID_RE = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def is_secret_key(key: str) -> bool:
    """True when a key looks like it holds a credential (password, token, access key...).

    Examples
    --------
    >>> [is_secret_key(k) for k in ("fs.s3a.secret.key", "fs.s3a.access.key", "header")]
    [True, True, False]
    >>> is_secret_key("fs.s3a.aws.credentials.provider")
    False
    """
    lowered = key.lower()
    flat = re.sub(r"[^a-z0-9]", "", lowered)
    if not any(marker in flat for marker in _SECRET_MARKERS):
        return False
    last = re.split(r"[^a-z0-9]+", lowered.strip("._- "))[-1]
    return last not in _NOT_SECRET_SUFFIXES


def redact_text(text: str) -> str:
    """``text`` without the credentials embedded in it.

    Removes URL user-info (``scheme://user:pass@host``, ``https://token@host``), the value of
    every credential-like
    ``key=value`` pair (``?password=``, ``;password=``, ``--conf fs.s3a.secret.key=...``) and AWS
    access key ids.

    Examples
    --------
    >>> redact_text("s3a://AKIAABCDEFGHIJKLMNOP:abc@bucket/x")
    's3a://__REDACTED__@bucket/x'
    >>> redact_text("jdbc:sqlserver://h;user=sa;password=p4ss;db=x")
    'jdbc:sqlserver://h;user=sa;password=__REDACTED__;db=x'
    """
    text = _URL_USERINFO_RE.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _redact_pairs(text)
    return _AWS_KEY_ID_RE.sub(REDACTED, text)


def _redact_pairs(text: str) -> str:
    # keys are found without consuming values, so ``x=password=y`` still hides ``y``
    out: list[str] = []
    pos = 0
    for match in _KEY_EQ_RE.finditer(text):
        if match.start() < pos or not is_secret_key(match.group("key")):
            continue
        value = _VALUE_RE.match(text, match.end())
        if value is not None and value.end() > match.end() and value.group(0) != REDACTED:
            out += [text[pos : match.end()], REDACTED]
            pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with every credential replaced by :data:`REDACTED`.

    Mappings keep their keys; the value of a credential-like key is replaced whatever it is
    (a string, a number, a nested table). Strings anywhere else go through
    :func:`redact_text`. Lists and tuples become lists; other values are returned as they are.

    Examples
    --------
    >>> redact({"options": {"url": "jdbc:mysql://u:pw@h/db", "fs.s3a.secret.key": "x"}})
    {'options': {'url': 'jdbc:mysql://__REDACTED__@h/db', 'fs.s3a.secret.key': '__REDACTED__'}}
    """
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value

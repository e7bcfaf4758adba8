"""JSON answers byte for byte as Flask's `jsonify` writes them, encoded by msgspec in C when that gives the same bytes.

Flask's default provider writes `json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":"))` and a
newline (outside debug mode); with its encoder built per call and the Response around it, that is ~13 µs of a rule
write's answer. msgspec's sorted encoding of a body of JSON types (dicts with str keys, lists, str, int, bool, None)
is the same text except where the two write a value differently: a non-ASCII character or DEL (json escapes them)
and a control character (both escape it, msgspec possibly with other hex digits' case); and floats, which repr()
writes with an exponent below 1e-4 or from 1e16 (msgspec: 0.00001, 1e16) and non-finite ones as NaN/Infinity
(msgspec: null). An answer that holds a float, or whose msgspec bytes hold any of those characters, is left to
`jsonify`, as is every answer when the app's provider is not Flask's default one in its compact form.
"""
from __future__ import annotations

import msgspec
from flask import current_app, jsonify
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Response

_encode = msgspec.json.Encoder(order="sorted").encode


def _flask_compact_default(app, provider) -> bool:
    """Return True when the app's provider writes what DefaultJSONProvider writes in its compact form."""
    cls = type(provider)
    return (isinstance(provider, DefaultJSONProvider) and cls.dumps is DefaultJSONProvider.dumps
            and cls.response is DefaultJSONProvider.response and provider.ensure_ascii is True
            and provider.sort_keys is True and provider.default is DefaultJSONProvider.default
            and not (provider.compact is None and app.debug) and provider.compact is not False)


def json_answer(body: dict, floats: bool = True) -> Response:
    """Return what `jsonify(body)` returns, for a body of JSON types; `floats=False`: the caller knows that no value
    in it is a float (the msgspec path is taken only then)."""
    app = current_app._get_current_object()
    provider = app.json
    if not floats and _flask_compact_default(app, provider):
        try:
            data = _encode(body)
        except (TypeError, ValueError, OverflowError):  # msgspec.EncodeError is a ValueError
            data = None
        # find(), not `in`: bytes.__contains__ first tries its argument as an int (a TypeError built and dropped)
        if data is not None and data.isascii() and data.find(b"\\u") < 0 and data.find(b"\x7f") < 0:
            return app.response_class(data + b"\n", mimetype=provider.mimetype)
    return jsonify(body)

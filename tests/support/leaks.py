"""What counts as a leaked secret, for every test that looks for one: LEAK consecutive characters of its secret part
(raw, or base64 of it at any alignment, in either alphabet), once whitespace and `\\n`-style escapes are taken out."""

import base64
import functools
import re

URL_SAFE = str.maketrans("+/", "-_")
SEPARATORS = re.compile(r"\s|\\[nrt]")
LEAK = 16  # pipe.redact.FRAGMENT: fewer characters of a secret may show (a short first piece of a wrapped one)


@functools.cache
def stretches(secret: str) -> frozenset[str]:
    """Every LEAK characters of the secret, and of each part of base64(anything + secret + anything) the secret alone
    decides (found by encoding it between two different neighbours), in both alphabets. A JWT's header is not
    secret (it names the signing key, published by the issuer): only its payload and signature count."""
    secret = secret.split(".", 1)[1] if re.match(r"eyJ[\w-]+\.", secret) else secret
    raw, forms = secret.encode(), [secret]
    for offset in range(3):
        zeros = base64.b64encode(bytes(offset) + raw + bytes(2)).decode()
        ones = base64.b64encode(b"\xff" * offset + raw + b"\xff" * 2).decode()
        core = max("".join(a if a == b else " " for a, b in zip(zeros, ones, strict=True)).split(), key=len)
        forms += [core, core.translate(URL_SAFE)]
    return frozenset(form[i:i + LEAK] for form in forms for i in range(len(form) - LEAK + 1))


def leaks(output: str, secret: str) -> bool:
    """Does the output show LEAK characters of the secret or of its base64, once separators are taken out?"""
    joined = SEPARATORS.sub("", output)
    return any(joined[i:i + LEAK] in stretches(secret) for i in range(len(joined) - LEAK + 1))



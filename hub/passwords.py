"""The password policy: one function, used wherever a password is set.

The rules follow what NIST SP 800-63B asks of a verifier (a minimum length and a
check against known-weak values) plus the two things the issue-11 probe got through
(ten spaces, one character repeated): a password must

- have at least ``MIN_LENGTH`` characters and not be blank;
- mix at least two kinds of character (lower-case, upper-case, digits, other letters
  such as CJK, symbols and spaces) and hold at least ``MIN_DISTINCT`` different ones;
- not be, or contain, the username;
- not be a well-known password, nor one with digits and symbols wrapped around a
  well-known word ("Password123!", "P@ssw0rd2024").

Pure: no I/O, no state.
"""

from __future__ import annotations

import re

MIN_LENGTH = 10
MIN_DISTINCT = 5

# Passwords and base words at the top of every leaked-password list (and the words an
# installer of this system would reach for). Compared in lower case, after undoing
# the usual letter-for-symbol swaps.
COMMON = frozenset("""
password passwort passw0rd motdepasse contrasena senha wachtwoord mima woaini
iloveyou qwerty qwertz azerty qwertyuiop asdfghjkl zxcvbnm qazwsx 1q2w3e4r5t
1qaz2wsx zaq12wsx abc123 abcdef abcdefg abcdefgh 123qwe qwe123 letmein welcome
admin administrator root toor guest user default changeme secret master monkey
dragon sunshine princess football baseball superman batman trustno1 shadow
michael jennifer hello hellohello login passpass access whatever freedom starwars
operator viewer worker manager hub demo test testing
0123456789 1234567890 0987654321 9876543210 12345678910 1122334455 1234512345
11111111111 000000000000 123123123123 147258369 147852369 987654321 123456789
5201314 1314520 88888888 66666666 aa123456 a1234567 abcd1234 qwer1234 asdf1234
""".split())

_LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e",
                       "$": "s", "5": "s", "7": "t", "+": "t", "8": "b", "9": "g"})
_WRAP = re.compile(r"^[\W\d_]*(.*?)[\W\d_]*$", re.UNICODE)


class WeakPassword(ValueError):
    """The message says which rule the password breaks."""


def _kinds(password: str) -> int:
    kinds = set()
    for ch in password:
        if ch.isascii() and ch.islower():
            kinds.add("lower")
        elif ch.isascii() and ch.isupper():
            kinds.add("upper")
        elif ch.isdigit():
            kinds.add("digit")
        elif ch.isalpha():
            kinds.add("letter")  # CJK and other scripts
        else:
            kinds.add("symbol")
    return len(kinds)


def _well_known(password: str) -> bool:
    low = password.lower()
    if low in COMMON or low.translate(_LEET) in COMMON:
        return True
    # A well-known word with digits and symbols around it: strip those, then compare
    # as typed and with the letter-for-symbol swaps undone.
    m = _WRAP.match(low)
    core = m.group(1) if m else ""
    return bool(core) and (core in COMMON or core.translate(_LEET) in COMMON)


def check(password: str, username: str = "") -> None:
    """Raise :class:`WeakPassword` unless ``password`` passes the policy."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("password must not be blank")
    if _kinds(password) < 2:
        raise WeakPassword("password must mix at least two kinds of character (lower-case,"
                           " upper-case, digits, other letters, symbols or spaces)")
    if len(set(password)) < MIN_DISTINCT:
        raise WeakPassword(f"password must use at least {MIN_DISTINCT} different characters")
    name = username.strip().lower()
    if name and (password.lower() == name or (len(name) >= 3 and name in password.lower())):
        raise WeakPassword("password must not be or contain the username")
    if _well_known(password):
        raise WeakPassword("password is a well-known one; choose another")

#!/usr/bin/env python3
"""Generates the labelled outbound-DLP test corpus (outbound.jsonl).

Run from the repository root:

    python3 crates/behavry-dlp/tests/corpus/generate.py

Deterministic (stdlib only, one seeded RNG). Every secret is a synthetic
random string of the right shape. Each line is
{"id", "context", "text", "expect"}, where `expect` is the set of detector
ids that must fire on `text` (`[]` for a hard negative). For context `json`
the text is a serialized JSON object (tool-call arguments) that the scanner
walks, keys included.

The script validates what it wrote (unique ids, known detector ids, minimum
counts, checksums of positives, and that no line holds an unlabelled e-mail,
phone number, IP address, card number, IBAN or SSN) and prints a count table.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import string
import sys
import urllib.parse
from collections import Counter
from pathlib import Path

import random

SEED = 20261122
rng = random.Random(SEED)

OUT = Path(__file__).resolve().parent / "outbound.jsonl"

CONTEXTS = ("json", "sql", "shell", "log", "env", "yaml", "prose", "base64", "url")

DETECTORS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "gcp_api_key",
    "google_oauth_token",
    "azure_storage_key",
    "github_token",
    "gitlab_token",
    "npm_token",
    "pypi_token",
    "slack_token",
    "slack_webhook",
    "discord_webhook",
    "openai_api_key",
    "anthropic_api_key",
    "huggingface_token",
    "stripe_secret_key",
    "sendgrid_api_key",
    "twilio_api_key",
    "private_key",
    "jwt",
    "connection_string_password",
    "basic_auth_header",
    "credit_card",
    "iban",
    "us_ssn",
    "generic_credential",
    "high_entropy_secret",
    "email",
    "phone_number",
    "ipv4_address",
    "ipv6_address",
)
LOW = ("email", "phone_number", "ipv4_address", "ipv6_address")

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
B64URL = ALNUM + "_-"
B64STD = ALNUM + "+/"
HEX = "0123456789abcdef"

# Substrings that make a value read as a placeholder, a test value or a
# pattern rather than a random secret; generated secrets never contain them.
BANNED = (
    "example", "your", "xxxx", "change", "placeholder", "dummy", "redact",
    "sample", "fake", "replace", "insert", "notreal", "not_real", "todo",
    "test", "secret", "pass", "token", "key", "demo", "1234", "2345", "3456",
    "4567", "5678", "6789", "abcd", "bcde", "cdef", "qwer", "asdf",
)


# --------------------------------------------------------------------------
# Random building blocks
# --------------------------------------------------------------------------

def has_run(s: str, n: int = 3) -> bool:
    """True when `s` repeats one character `n` times in a row."""
    return any(s[i:i + n] == s[i] * n for i in range(len(s) - n + 1))


def acceptable(s: str) -> bool:
    low = s.lower()
    return not has_run(s) and not any(b in low for b in BANNED)


def rand_str(alphabet: str, n: int, need: tuple[str, ...] = ()) -> str:
    """A random string over `alphabet` holding a char of each class in `need`."""
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        if all(any(c in cls for c in s) for cls in need) and acceptable(s):
            return s


def mixed(alphabet: str, n: int) -> str:
    """Random string mixing upper case, lower case and digits."""
    return rand_str(alphabet, n, (UPPER, LOWER, DIGITS))


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def b64url_nopad(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def pct(secret: str) -> str:
    """Percent-encodes `secret` so that at least one of its characters is
    encoded (over-encoding an unreserved one when nothing needs encoding)."""
    enc = urllib.parse.quote(secret, safe="")
    if enc != secret:
        return enc
    specials = [i for i, c in enumerate(secret) if not c.isalnum()]
    i = rng.choice(specials) if specials else rng.randrange(len(secret))
    return secret[:i] + "%%%02X" % ord(secret[i]) + secret[i + 1:]


def pct_all(text: str) -> str:
    """Query-string encoding of a whole line (spaces as %20)."""
    return urllib.parse.quote(text, safe="")


def pick(seq):
    return rng.choice(seq)


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(partial: str) -> str:
    for d in DIGITS:
        if luhn_ok(partial + d):
            return partial + d
    raise AssertionError


CARD_ISSUER = re.compile(
    r"^(?:4|5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720|3[4-8]|65|6011|64[4-9])"
)


def is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(CARD_ISSUER.match(digits)) and luhn_ok(digits)


IBAN_LEN = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16,
            "AT": 20, "CH": 21, "IE": 22, "PL": 28, "PT": 25, "SE": 24, "DK": 18,
            "FI": 18, "NO": 15, "LU": 20}


def iban_mod97(iban: str) -> int:
    s = iban[4:] + iban[:4]
    num = "".join(str(int(c, 36)) for c in s)
    return int(num) % 97


def iban_ok(s: str) -> bool:
    c = s.replace(" ", "")
    return (c[:2] in IBAN_LEN and len(c) == IBAN_LEN[c[:2]]
            and c[2:4].isdigit() and c.isalnum() and iban_mod97(c) == 1)


def ssn_ok(s: str) -> bool:
    m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", s)
    if not m:
        return False
    a, g, n = (int(x) for x in m.groups())
    return a not in (0, 666) and a < 900 and g != 0 and n != 0


# --------------------------------------------------------------------------
# Corpus records
# --------------------------------------------------------------------------

RECORDS: list[dict] = []
META: list[dict] = []  # parallel to RECORDS: secrets and checks, not written
_ids: Counter = Counter()


def add(label: str, context: str, text: str, expect: list[str], secrets: list[str] = (),
        checks: dict | None = None) -> None:
    assert context in CONTEXTS, context
    if context == "json":
        json.loads(text)
    _ids[(label, context)] += 1
    rid = f"{label}-{context}-{_ids[(label, context)]:02d}"
    RECORDS.append({"id": rid, "context": context, "text": text, "expect": sorted(set(expect))})
    META.append({"secrets": list(secrets), "checks": checks or {}})


def positive(det: str, build, contexts=CONTEXTS, tries: int = 50) -> None:
    """Adds one positive for `det` per context; `build(ctx)` returns
    (text, secrets[, extra_expect]). A line that would carry an unlabelled
    low-severity or numeric finding is rebuilt."""
    for ctx in contexts:
        for _ in range(tries):
            out = build(ctx)
            text, secrets = out[0], out[1]
            expect = [det] + (list(out[2]) if len(out) > 2 else [])
            if not stray_findings(text, ctx, set(expect)):
                break
        else:
            raise AssertionError(f"could not build a clean {det} line for {ctx}")
        add(det, ctx, text, expect, secrets)


def negative(kind: str, context: str, text: str) -> None:
    problems = stray_findings(text, context, set())
    assert not problems, (kind, text, problems)
    add(f"neg-{kind}", context, text, [])


# --------------------------------------------------------------------------
# Stray-finding checks (what a correct scanner would report that a line's
# label does not list): e-mail, phone, IPs, cards, IBANs, SSNs.
# --------------------------------------------------------------------------

RE_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
RE_PHONE = re.compile(
    r"(?:\+[1-9][0-9]{7,14}\b|(?:\([2-9][0-9]{2}\) ?|\b[2-9][0-9]{2}[.\-])[2-9][0-9]{2}[.\-][0-9]{4}\b)",
    re.ASCII,
)
RE_IPV4 = re.compile(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", re.ASCII)
RE_IPV6 = re.compile(r"(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}")
RE_DIGITRUN = re.compile(r"(?<![0-9A-Za-z_])[0-9]+(?:[ \-][0-9]+)*(?![0-9A-Za-z_])")
RE_IBANISH = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.ASCII)
RE_SSN = re.compile(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", re.ASCII)
RE_B64RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")


def _json_strings(v, out: list[str]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            out.append(k)
            _json_strings(x, out)
    elif isinstance(v, list):
        for x in v:
            _json_strings(x, out)
    elif isinstance(v, str):
        out.append(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        out.append(str(v))


def views(text: str, context: str) -> list[str]:
    """The texts a scanner looks at: the line (or each JSON string), each
    with one level of percent- and base64-decoding."""
    base = []
    if context == "json":
        _json_strings(json.loads(text), base)
    base.append(text)
    out = []
    for t in base:
        out.append(t)
        if "%" in t:
            out.append(urllib.parse.unquote(t))
        for m in RE_B64RUN.finditer(t):
            run = m.group(0).rstrip("=")
            alt = "-_" if ("-" in run or "_" in run) else "+/"
            try:
                raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=alt.encode(), validate=True)
                dec = raw.decode("utf-8")
            except Exception:
                continue
            printable = sum(1 for c in dec if c.isprintable() or c in "\n\r\t")
            if dec and printable * 100 >= len(dec) * 95:
                out.append(dec)
    return out


def card_spans(t: str):
    """Digit sequences (optionally grouped by one kind of separator) that are
    card numbers, considering every group-aligned sub-span."""
    for m in RE_DIGITRUN.finditer(t):
        run = m.group(0)
        groups = re.split(r"[ \-]", run)
        seps = re.findall(r"[ \-]", run)
        for i in range(len(groups)):
            for j in range(i, len(groups)):
                if len(set(seps[i:j])) > 1:
                    continue
                digits = "".join(groups[i:j + 1])
                if not 13 <= len(digits) <= 19:
                    continue
                lens = [len(g) for g in groups[i:j + 1]]
                if len(lens) > 1 and lens != [4, 6, 5] and not (
                        all(x == 4 for x in lens[:-1]) and 1 <= lens[-1] <= 4):
                    continue
                if is_card(digits):
                    yield digits


def stray_findings(text: str, context: str, expect: set[str]) -> list[str]:
    found = []
    for v in views(text, context):
        if "email" not in expect and RE_EMAIL.search(v):
            found.append("email:" + RE_EMAIL.search(v).group(0))
        if "phone_number" not in expect and RE_PHONE.search(v):
            found.append("phone:" + RE_PHONE.search(v).group(0))
        if "ipv4_address" not in expect:
            for m in RE_IPV4.finditer(v):
                try:
                    ipaddress.IPv4Address(m.group(0))
                    found.append("ipv4:" + m.group(0))
                except ValueError:
                    pass
        if "ipv6_address" not in expect:
            for m in RE_IPV6.finditer(v):
                s = m.group(0)
                if s.count(":") >= 2:
                    try:
                        ipaddress.IPv6Address(s)
                        found.append("ipv6:" + s)
                    except ValueError:
                        pass
        if "credit_card" not in expect:
            found += ["card:" + d for d in card_spans(v)]
        if "iban" not in expect:
            found += ["iban:" + m.group(0) for m in RE_IBANISH.finditer(v) if iban_ok(m.group(0))]
        if "us_ssn" not in expect:
            found += ["ssn:" + m.group(0) for m in RE_SSN.finditer(v) if ssn_ok(m.group(0))]
    return found


# --------------------------------------------------------------------------
# Shared context templates for self-identifying tokens
# --------------------------------------------------------------------------

HOSTS = ("api.example.com", "ci.example.net", "tools.example.org", "build.example.com")
TS = ("2026-11-22T10:30:00Z", "2026-11-22T08:14:55Z", "2026-11-21T23:02:17Z", "2026-11-22T12:00:41Z")


def token_line(ctx: str, var: str, s: str):
    """Embeds a self-identifying token `s` (env var name `var`) in context `ctx`."""
    lower = var.lower()
    if ctx == "json":
        t = pick((
            lambda: {"path": "/app/.env", "content": f"{var}={s}\nLOG_LEVEL=info\n"},
            lambda: {"command": f"export {var}={s} && make deploy", "cwd": "/srv/app"},
            lambda: {"name": "write_file", "path": "config/runtime.toml", "content": f"[auth]\n{lower} = \"{s}\"\n"},
        ))()
        return json.dumps(t)
    if ctx == "sql":
        return pick((
            f"INSERT INTO integrations (provider, credential) VALUES ('{lower.split('_')[0]}', '{s}');",
            f"UPDATE settings SET value = '{s}' WHERE name = '{var}';",
        ))
    if ctx == "shell":
        return pick((
            f"export {var}={s}",
            f"docker run --rm -e {var}={s} ghcr.io/acme/worker:1.4.2",
            f"gh secret set {var} --body \"{s}\"",
        ))
    if ctx == "log":
        return pick((
            f"{pick(TS)} INFO  worker: loaded {var}={s} from environment",
            f"[{pick(TS)}] DEBUG config resolved: {{\"{lower}\": \"{s}\", \"retries\": 3}}",
        ))
    if ctx == "env":
        return pick((
            f"NODE_ENV=production\n{var}={s}\nPORT=8080",
            f"{var}=\"{s}\"",
        ))
    if ctx == "yaml":
        return pick((
            f"env:\n  - name: {var}\n    value: \"{s}\"\n  - name: LOG_LEVEL\n    value: info",
            f"integrations:\n  {lower}: {s}\n  enabled: true",
        ))
    if ctx == "prose":
        return pick((
            f"Here is the credential from the old CI job: {s} - can you check why the pipeline rejects it?",
            f"I pasted {s} into the settings page but the integration still shows as disconnected.",
            f"Use {s} for now, I'll rotate it after the release.",
        ))
    if ctx == "base64":
        line = f"{var}={s}"
        enc = b64(line)
        return pick((
            json.dumps({"path": "deploy/env.b64", "content": enc}),
            f"echo {enc} | base64 -d >> .env",
            f"apiVersion: v1\nkind: Secret\ndata:\n  dotenv: {enc}",
        ))
    if ctx == "url":
        host = pick(HOSTS)
        return pick((
            f"https://{host}/search?q={pct(s)}&page=2",
            f"https://{host}/v1/notes?text=new%20value%20{pct(s)}",
        ))
    raise AssertionError(ctx)


def tok(det: str, var: str, gen):
    def build(ctx):
        s = gen()
        return token_line(ctx, var, s), [s]
    positive(det, build)


# --------------------------------------------------------------------------
# Positives
# --------------------------------------------------------------------------

def aws_key_id() -> str:
    while True:
        s = pick(("AKIA", "ASIA")) + rand_str(UPPER + DIGITS, 16, (UPPER, DIGITS))
        if "EXAMPLE" not in s:
            return s


def github() -> str:
    if rng.random() < 0.75:
        return pick(("ghp_", "gho_", "ghs_")) + mixed(ALNUM, 36)
    return "github_pat_" + mixed(ALNUM, 22) + "_" + mixed(ALNUM, 59)


def card(style: str | None = None) -> tuple[str, str]:
    """(digits, as written)."""
    brand = pick(("visa", "mc", "amex", "discover"))
    if brand == "visa":
        prefix, n = "4", 16
    elif brand == "mc":
        prefix, n = str(rng.randint(51, 55)), 16
    elif brand == "amex":
        prefix, n = pick(("34", "37")), 15
    else:
        prefix, n = "6011", 16
    while True:
        body = prefix + "".join(pick(DIGITS) for _ in range(n - len(prefix) - 1))
        d = luhn_complete(body)
        if acceptable(d):
            break
    style = style or pick(("plain", "space", "dash"))
    if style == "plain":
        return d, d
    sep = " " if style == "space" else "-"
    groups = [d[0:4], d[4:10], d[10:]] if n == 15 else [d[i:i + 4] for i in range(0, 16, 4)]
    return d, sep.join(groups)


def card_line(ctx: str):
    d, w = card("space" if ctx == "url" else None)
    if ctx == "json":
        t = pick((
            {"tool": "http_request", "method": "POST", "path": "/v1/charges", "body": f"amount=4200&card_number={w}"},
            {"path": "exports/customers.csv", "content": f"customer,card\nacme,{w}\n"},
        ))
        text = json.dumps(t)
    elif ctx == "sql":
        text = f"INSERT INTO payments (customer_id, card_number, amount) VALUES (8812, '{w}', 42.00);"
    elif ctx == "shell":
        text = f"stripe-mock charge --card '{w}' --amount 1999"
    elif ctx == "log":
        text = f"{pick(TS)} WARN  checkout: payment declined for card {w} (code=do_not_honor)"
    elif ctx == "env":
        text = f"FALLBACK_CARD_NUMBER={w}"
    elif ctx == "yaml":
        text = f"billing:\n  card_number: \"{w}\"\n  currency: EUR"
    elif ctx == "prose":
        text = f"Please charge my card {w}, expiry next year, for the annual plan."
    elif ctx == "base64":
        text = json.dumps({"attachment": "note.txt", "data": b64(f"card on file: {w}")})
    else:
        enc = w.replace(" ", "%20")
        text = f"https://{pick(HOSTS)}/checkout/confirm?card={enc}&plan=annual"
    return text, [w], ()


def generic_value() -> str:
    symbols = "!#%*^~?+"
    while True:
        n = rng.randint(10, 16)
        chars = [pick(UPPER), pick(LOWER), pick(DIGITS), pick(symbols)]
        chars += [pick(ALNUM + symbols) for _ in range(n - 4)]
        rng.shuffle(chars)
        s = "".join(chars)
        if not s[0].isalnum() or not acceptable(s) or "**" in s or "..." in s:
            continue
        # '%' followed by two hex digits would read as percent-encoding.
        if re.search(r"%[0-9A-Fa-f]{2}", s):
            continue
        return s


def generic_line(ctx: str):
    v = generic_value()
    if ctx == "json":
        key = pick(("client_secret", "db_password", "api_key", "password", "smtp_password"))
        t = pick((
            {"service": "billing", key: v},
            {"tool": "configure_connector", "config": {"host": "warehouse", key: v}},
        ))
        text = json.dumps(t)
    elif ctx == "sql":
        text = f"UPDATE connectors SET password = '{v}' WHERE name = 'warehouse';"
    elif ctx == "shell":
        text = f"export DB_PASSWORD='{v}' && ./migrate up"
    elif ctx == "log":
        text = f"{pick(TS)} DEBUG smtp: connecting with user=mailer password={v}"
    elif ctx == "env":
        text = pick((f"DB_PASSWORD={v}", f"REDIS_PASSWORD={v}\nREDIS_PORT=6379"))
    elif ctx == "yaml":
        text = f"database:\n  user: app\n  password: \"{v}\"\n  pool: 10"
    elif ctx == "prose":
        text = f"The admin login for staging is admin / password: {v} - please change it after the demo."
    elif ctx == "base64":
        text = f"echo {b64('api_key=' + v)} | base64 -d > creds.txt"
    else:
        text = f"https://{pick(HOSTS)}/login?user=admin&password={pct(v)}"
    return text, [v], ()


def digits(n: int, first: str = "123456789") -> str:
    while True:
        d = pick(first) + "".join(pick(DIGITS) for _ in range(n - 1))
        if acceptable(d):
            return d


def gcp_key() -> str:
    return "AIza" + mixed(B64URL, 35)


def google_oauth() -> str:
    return "ya29." + mixed(B64URL, rng.randint(40, 80))


def gitlab() -> str:
    return "glpat-" + mixed(B64URL, 20)


def npm() -> str:
    return "npm_" + mixed(ALNUM, 36)


def pypi() -> str:
    return "pypi-AgEIcHlwaS5vcmc" + mixed(B64URL, 60)


def slack_token() -> str:
    if rng.random() < 0.6:
        return f"xoxb-{digits(12)}-{digits(13)}-{mixed(ALNUM, 24)}"
    return f"xoxp-{digits(12)}-{digits(12)}-{digits(13)}-{rand_str(HEX, 32, (DIGITS, 'abcdef'))}"


def slack_webhook() -> str:
    t = "T" + rand_str(UPPER + DIGITS, rng.randint(8, 10), (UPPER, DIGITS))
    b = "B" + rand_str(UPPER + DIGITS, rng.randint(8, 10), (UPPER, DIGITS))
    return f"https://hooks.slack.com/services/{t}/{b}/{mixed(ALNUM, 24)}"


def discord_webhook() -> str:
    # Snowflake ids start with 1 (never a card issuer prefix).
    return f"https://discord.com/api/webhooks/1{digits(17, DIGITS)}/{mixed(B64URL, 68)}"


def openai() -> str:
    if rng.random() < 0.6:
        return "sk-proj-" + mixed(B64URL, rng.randint(48, 100))
    return "sk-" + mixed(ALNUM, 48)


def anthropic() -> str:
    while True:
        body = mixed(B64URL, 91)
        if body[-1] != "A":
            return "sk-ant-api03-" + body + "AA"


def huggingface() -> str:
    return "hf_" + rand_str(UPPER + LOWER, 34, (UPPER, LOWER))


def stripe() -> str:
    return pick(("sk_live_", "rk_live_")) + mixed(ALNUM, rng.randint(24, 34))


def sendgrid() -> str:
    return "SG." + mixed(B64URL, 22) + "." + mixed(B64URL, 43)


def twilio() -> str:
    return "SK" + rand_str(HEX, 32, (DIGITS, "abcdef"))


def aws_secret() -> str:
    while True:
        v = mixed(B64STD, 40)
        if "/" in v or "+" in v:
            return v


def aws_secret_line(ctx: str):
    v = aws_secret()
    extra = ()
    if ctx == "json":
        text = json.dumps({"path": "/home/dev/.aws/credentials",
                           "content": f"[default]\nregion = eu-west-1\naws_secret_access_key = {v}\n"})
    elif ctx == "sql":
        text = f"UPDATE cloud_accounts SET aws_secret_access_key = '{v}' WHERE id = 7;"
    elif ctx == "shell":
        text = pick((f"export AWS_SECRET_ACCESS_KEY={v}",
                     f"docker run --rm -e AWS_SECRET_ACCESS_KEY={v} amazon/aws-cli s3 ls"))
    elif ctx == "log":
        k = aws_key_id()
        text = (f"{pick(TS)} DEBUG sts: assumed role deploy, credentials "
                f"{{\"AccessKeyId\": \"{k}\", \"SecretAccessKey\": \"{v}\", \"Expiration\": \"2026-11-22T11:30:00Z\"}}")
        extra = ("aws_access_key_id",)
        return text, [v, k], extra
    elif ctx == "env":
        text = f"AWS_REGION=eu-west-1\nAWS_SECRET_ACCESS_KEY={v}"
    elif ctx == "yaml":
        text = f"aws:\n  region: eu-west-1\n  AWS_SECRET_ACCESS_KEY: \"{v}\""
    elif ctx == "prose":
        text = f"The bucket sync failed; I set aws_secret_access_key={v} in the job config, is that the right one?"
    elif ctx == "base64":
        text = json.dumps({"path": "ci/aws.b64", "content": b64(f"aws_secret_access_key={v}")})
    else:
        text = f"https://{pick(HOSTS)}/debug/env?region=eu-west-1&aws_secret_access_key={pct(v)}"
    return text, [v], extra


def azure_conn() -> tuple[str, str]:
    while True:
        key = base64.b64encode(rng.randbytes(64)).decode()
        if acceptable(key) and all(any(c in cls for c in key) for cls in (UPPER, LOWER, DIGITS)):
            break
    acct = pick(("stlogs", "stprodassets", "stbackup", "stmedia")) + digits(2, DIGITS)
    conn = (f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};"
            f"EndpointSuffix=core.windows.net")
    return key, conn


def azure_line(ctx: str):
    key, c = azure_conn()
    if ctx == "json":
        text = json.dumps(pick((
            {"path": "src/appsettings.Production.json",
             "content": json.dumps({"ConnectionStrings": {"Storage": c}}, indent=2)},
            {"command": f"az storage blob upload-batch -d logs -s ./out --connection-string \"{c}\""},
        )))
    elif ctx == "sql":
        text = f"INSERT INTO app_config (name, value) VALUES ('storage', '{c}');"
    elif ctx == "shell":
        text = f"export AZURE_STORAGE_CONNECTION_STRING=\"{c}\""
    elif ctx == "log":
        text = f"{pick(TS)} INFO  blob: client initialised from {c}"
    elif ctx == "env":
        text = f"AZURE_STORAGE_CONNECTION_STRING={c}"
    elif ctx == "yaml":
        text = f"storage:\n  provider: azure\n  connectionString: \"{c}\""
    elif ctx == "prose":
        text = f"The connection string for the logs account is {c} - it stopped working after the migration."
    elif ctx == "base64":
        text = f"storage-connection: {b64(c)}"
    else:
        text = f"https://{pick(HOSTS)}/tools/check?cs={pct_all(c)}"
    return text, [key], ()


PEM_KINDS = {
    "RSA PRIVATE KEY": "MIIEowIBAAKCAQEA",
    "EC PRIVATE KEY": "MHcCAQEEI",
    "PRIVATE KEY": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "OPENSSH PRIVATE KEY": "",
}


def pem() -> str:
    kind = pick(tuple(PEM_KINDS))
    while True:
        n = rng.randint(3, 6)
        body = PEM_KINDS[kind] + base64.b64encode(rng.randbytes(48 * n)).decode()
        body = body[: 64 * n - rng.randint(5, 40)]
        body = body + "=" * (-len(body) % 4)
        if acceptable(body):
            break
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def private_key_line(ctx: str):
    k = pem()
    if ctx == "json":
        text = json.dumps({"path": "/home/dev/.ssh/id_deploy", "content": k + "\n", "mode": "0600"})
    elif ctx == "sql":
        text = f"INSERT INTO deploy_keys (name, pem) VALUES ('ci-runner', '{k}');"
    elif ctx == "shell":
        text = f"cat > ~/.ssh/id_deploy <<'EOF'\n{k}\nEOF\nchmod 600 ~/.ssh/id_deploy"
    elif ctx == "log":
        text = f"{pick(TS)} DEBUG tls: loaded server key from disk:\n{k}"
    elif ctx == "env":
        text = "TLS_KEY_PEM=\"" + k + "\""
    elif ctx == "yaml":
        text = "tls:\n  cert_file: /etc/tls/server.crt\n  key_pem: |\n" + "\n".join("    " + l for l in k.split("\n"))
    elif ctx == "prose":
        text = f"Here is the deploy key, please add it to the build server:\n\n{k}\n\nThanks!"
    elif ctx == "base64":
        text = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": {"tls.pem": b64(k)}})
    else:
        text = f"https://{pick(HOSTS)}/paste?body={pct_all(k)}"
    # The BEGIN line stands for the block (YAML indents the rest).
    return text, [k.split("\n")[0]], ()


def jwt() -> str:
    alg = pick(("HS256", "HS384", "RS256"))
    header = {"alg": alg, "typ": "JWT"}
    if alg == "RS256":
        header["kid"] = rand_str(LOWER + DIGITS, 8, (LOWER, DIGITS))
    iat = 1763800000 + rng.randint(0, 90000)
    payload = {"sub": "usr_" + rand_str(LOWER + DIGITS, 10, (LOWER, DIGITS)), "iat": iat,
               "exp": iat + pick((900, 3600, 86400)), "role": pick(("admin", "member", "viewer"))}
    enc = lambda o: b64url_nopad(json.dumps(o, separators=(",", ":")).encode())
    return f"{enc(header)}.{enc(payload)}.{mixed(B64URL, 43)}"


def jwt_line(ctx: str):
    j = jwt()
    host = pick(HOSTS)
    if ctx == "json":
        text = json.dumps({"tool": "http_request", "method": "GET", "url": f"https://{host}/v1/me",
                           "headers": {"Authorization": f"Bearer {j}"}})
    elif ctx == "sql":
        text = f"SELECT user_id, expires_at FROM sessions WHERE jwt = '{j}';"
    elif ctx == "shell":
        text = f"curl -H \"Authorization: Bearer {j}\" https://{host}/v1/projects"
    elif ctx == "log":
        text = f"{pick(TS)} WARN  auth: rejected expired session jwt {j}"
    elif ctx == "env":
        text = f"SESSION_JWT={j}"
    elif ctx == "yaml":
        text = f"http:\n  headers:\n    Authorization: Bearer {j}"
    elif ctx == "prose":
        text = f"Decoding this jwt gives me the wrong role, can you look? {j}"
    elif ctx == "base64":
        text = json.dumps({"path": "tmp/request.b64", "content": b64(f"Authorization: Bearer {j}")})
    else:
        text = f"https://{host}/callback?state=ok&session={pct(j)}"
    return text, [j], ()


DB = (
    ("postgres", "db-primary", 5432, "orders"),
    ("postgresql", "pg-replica-2", 5432, "analytics"),
    ("mysql", "mysql-0", 3306, "shop"),
    ("mongodb+srv", "cluster0", None, "events"),
    ("redis", "cache", 6379, "0"),
    ("amqp", "rabbitmq", 5672, "jobs"),
)


def conn_string() -> tuple[str, str, str, str]:
    """(prefix, password, suffix, whole)."""
    scheme, host, port, db = pick(DB)
    user = "default" if scheme == "redis" else pick(("app", "svc_orders", "reporting", "admin", "worker"))
    pw = mixed(ALNUM, rng.randint(10, 16))
    prefix = f"{scheme}://{user}:"
    suffix = f"@{host}" + (f":{port}" if port else "") + f"/{db}"
    return prefix, pw, suffix, prefix + pw + suffix


def conn_line(ctx: str):
    pre, pw, suf, c = conn_string()
    if ctx == "json":
        text = json.dumps(pick((
            {"name": "set_env", "key_name": "DATABASE_URL", "value": c},
            {"command": f"psql '{c}' -c 'select count(*) from orders'"},
        )))
    elif ctx == "sql":
        text = f"CREATE SERVER reporting FOREIGN DATA WRAPPER dblink_fdw OPTIONS (dsn '{c}');"
    elif ctx == "shell":
        text = f"DATABASE_URL=\"{c}\" ./bin/migrate --yes"
    elif ctx == "log":
        text = f"{pick(TS)} ERROR db: connection to {c} refused (attempt 3/5)"
    elif ctx == "env":
        text = f"DATABASE_URL={c}\nPOOL_SIZE=20"
    elif ctx == "yaml":
        text = f"datasource:\n  url: {c}\n  maxPoolSize: 20"
    elif ctx == "prose":
        text = f"Can you connect with {c} and check why the nightly job is slow?"
    elif ctx == "base64":
        text = f"echo {b64('DATABASE_URL=' + c)} | base64 -d > .env.production"
    else:
        enc = pct_all(pre) + pct(pw) + pct_all(suf)
        text = f"https://{pick(HOSTS)}/admin/db-check?dsn={enc}"
    return text, [pw], ()


def basic_auth() -> tuple[str, str]:
    while True:
        user = pick(("deploy", "ci-bot", "admin", "svc_reports", "grafana", "scraper"))
        pw = mixed(ALNUM + "!#%^", rng.randint(10, 16))
        token = b64(f"{user}:{pw}")
        if any(c in token for c in "+/=") and not re.search(r"%[0-9A-Fa-f]{2}", pw):
            return pw, token


def basic_line(ctx: str):
    pw, t = basic_auth()
    host = pick(HOSTS)
    if ctx == "json":
        text = json.dumps({"command": f"curl -s -H 'Authorization: Basic {t}' https://{host}/api/health"})
    elif ctx == "sql":
        text = f"UPDATE webhooks SET headers = '{{\"Authorization\": \"Basic {t}\"}}' WHERE id = 12;"
    elif ctx == "shell":
        text = f"curl -H \"Authorization: Basic {t}\" https://{host}/metrics"
    elif ctx == "log":
        text = f"{pick(TS)} DEBUG http: > GET /metrics HTTP/1.1\\r\\n> Authorization: Basic {t}"
    elif ctx == "env":
        text = f"UPSTREAM_AUTHORIZATION=\"Basic {t}\""
    elif ctx == "yaml":
        text = f"proxy:\n  upstream: https://{host}\n  headers:\n    Authorization: Basic {t}"
    elif ctx == "prose":
        text = f"The legacy endpoint only accepts Authorization: Basic {t} so I hardcoded it for now."
    elif ctx == "base64":
        text = json.dumps({"path": "har/request-17.b64", "content": b64(f"Authorization: Basic {t}")})
    else:
        text = f"https://{host}/replay?path=%2Fmetrics&Authorization=Basic%20{pct(t)}"
    return text, [t], ()


def iban_check(country: str, bban: str) -> str:
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(num) % 97:02d}"


def fr_rib_key(bank: str, branch: str, account: str) -> str:
    return f"{97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97:02d}"


def es_control(bank: str, branch: str, account: str) -> str:
    def dc(ds: str, w: tuple[int, ...]) -> str:
        d = 11 - sum(int(a) * b for a, b in zip(ds, w)) % 11
        return "1" if d == 10 else "0" if d == 11 else str(d)
    w = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
    return dc("00" + bank + branch, w) + dc(account, w)


def iban_raw(country: str | None = None) -> str:
    country = country or pick(("DE", "GB", "FR", "NL", "ES"))
    while True:
        if country == "DE":
            bban = digits(8) + digits(10, DIGITS)
        elif country == "GB":
            bban = pick(("NWBK", "BARC", "LOYD", "HBUK", "MIDL")) + digits(6) + digits(8, DIGITS)
        elif country == "FR":
            bank, branch, acct = digits(5), digits(5, DIGITS), digits(11, DIGITS)
            bban = bank + branch + acct + fr_rib_key(bank, branch, acct)
        elif country == "NL":
            bban = pick(("ABNA", "RABO", "INGB", "TRIO", "SNSB")) + digits(10, DIGITS)
        else:
            bank, branch, acct = digits(4), digits(4, DIGITS), digits(10, DIGITS)
            bban = bank + branch + es_control(bank, branch, acct) + acct
        iban = country + iban_check(country, bban) + bban
        assert len(iban) == IBAN_LEN[country] and iban_ok(iban)
        if acceptable(iban):
            return iban


def group4(s: str) -> str:
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def iban_line(ctx: str):
    raw = iban_raw()
    w = group4(raw) if (ctx == "url" or rng.random() < 0.5) else raw
    if ctx == "json":
        text = json.dumps({"tool": "create_payout", "beneficiary": "Nordlicht Moebel GmbH",
                           "iban": w, "amount": "1250.00", "currency": "EUR"})
    elif ctx == "sql":
        text = f"INSERT INTO vendors (name, iban) VALUES ('Blue Harbour Ltd', '{w}');"
    elif ctx == "shell":
        text = f"./bin/payout --iban '{w}' --amount 120.00 --reference INV-2026-0114"
    elif ctx == "log":
        text = f"{pick(TS)} INFO  sepa: mandate created for account {w}"
    elif ctx == "env":
        text = f"REFUND_ACCOUNT_IBAN={w}"
    elif ctx == "yaml":
        text = f"beneficiary:\n  name: Atelier Rousseau\n  iban: \"{w}\""
    elif ctx == "prose":
        text = f"Please wire the refund to {w}, reference is the invoice number."
    elif ctx == "base64":
        text = json.dumps({"attachment": "bank-details.txt", "data": b64(f"IBAN: {w}")})
    else:
        text = f"https://{pick(HOSTS)}/pay?iban={w.replace(' ', '%20')}&amount=120.00"
    return text, [w], ()


def ssn() -> str:
    while True:
        a = rng.randint(1, 899)
        if a == 666:
            continue
        s = f"{a:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if acceptable(s.replace("-", "")):
            return s


def ssn_line(ctx: str):
    v = ssn()
    if ctx == "json":
        text = json.dumps({"tool": "update_record", "table": "employees", "id": 4471,
                           "fields": {"ssn": v, "status": "active"}})
    elif ctx == "sql":
        text = f"INSERT INTO applicants (full_name, ssn) VALUES ('Dana Whitfield', '{v}');"
    elif ctx == "shell":
        text = f"./kyc-check --name 'Marcus Ortega' --ssn {v}"
    elif ctx == "log":
        text = f"{pick(TS)} INFO  kyc: identity verification failed for ssn {v}"
    elif ctx == "env":
        text = f"KYC_FIXTURE_SSN={v}"
    elif ctx == "yaml":
        text = f"applicant:\n  name: Lena Hart\n  ssn: \"{v}\""
    elif ctx == "prose":
        text = f"My social security number is {v}, can you update it on my tax form?"
    elif ctx == "base64":
        text = f"note: {b64('SSN ' + v + ' on file')}"
    else:
        text = f"https://{pick(HOSTS)}/lookup?ssn={pct(v)}"
    return text, [v], ()


ENTROPY_KEYS = ("signing_key", "webhook_signature_salt", "encryption_key", "hmac_key",
                "session_signing_key", "cookie_salt", "master_key", "data_encryption_key")


def entropy_line(ctx: str):
    v = mixed(ALNUM, rng.randint(32, 48))
    k = pick(ENTROPY_KEYS)
    if ctx == "json":
        text = json.dumps(pick((
            {"service": "webhooks", k: v},
            {"tool": "set_config", "scope": "tenant", "values": {"retries": 3, k: v}},
        )))
    elif ctx == "sql":
        text = f"UPDATE tenants SET {k} = '{v}' WHERE id = 3;"
    elif ctx == "shell":
        text = f"export {k.upper()}={v}"
    elif ctx == "log":
        text = f"{pick(TS)} DEBUG config: loaded {k}={v}"
    elif ctx == "env":
        text = f"{k.upper()}={v}\nAPP_ENV=production"
    elif ctx == "yaml":
        text = f"crypto:\n  {k}: {v}\n  rotation_days: 90"
    elif ctx == "prose":
        text = f"On the new node set {k}: {v} so that old sessions stay valid."
    elif ctx == "base64":
        text = json.dumps({"path": "config/crypto.b64", "content": b64(f"{k} = {v}")})
    else:
        text = f"https://{pick(HOSTS)}/debug/config?{k}={pct(v)}"
    return text, [v], ()


FIRST = ("jane", "omar", "priya", "lukas", "mei", "carlos", "sofia", "tomas", "amara", "noah")
LAST = ("doe", "haddad", "nair", "becker", "chen", "ruiz", "rossi", "novak", "okafor", "berg")
DOMAINS = ("example.com", "example.org", "example.net")


def email() -> str:
    return f"{pick(FIRST)}{pick(('.', '_', ''))}{pick(LAST)}@{pick(DOMAINS)}"


def email_line(ctx: str):
    e = email()
    if ctx == "json":
        text = json.dumps({"tool": "send_email", "to": e, "subject": "Quarterly report", "body": "Attached."})
    elif ctx == "sql":
        text = f"SELECT id, plan FROM users WHERE email = '{e}';"
    elif ctx == "log":
        text = f"{pick(TS)} INFO  auth: password reset requested for {e}"
    elif ctx == "yaml":
        text = f"maintainers:\n  - name: Platform team\n    contact: {e}"
    elif ctx == "prose":
        text = f"Please forward the invoice to {e} before Friday."
    elif ctx == "shell":
        text = f"git config user.email {e}"
    else:
        text = f"https://{pick(HOSTS)}/invite?to={pct(e)}&role=viewer"
    return text, [e], ()


def phone() -> str:
    area = pick("23456789") + pick(DIGITS) + pick(DIGITS)
    line = "01" + pick(DIGITS) + pick("123456789")
    return pick((f"+1{area}555{line}", f"({area}) 555-{line}", f"{area}-555-{line}"))


def phone_line(ctx: str):
    p = phone()
    while ctx == "url" and not p.startswith("+"):
        p = phone()
    if ctx == "json":
        text = json.dumps({"tool": "send_sms", "to": p, "message": "Your order has shipped."})
    elif ctx == "sql":
        text = f"UPDATE customers SET phone = '{p}' WHERE id = 918;"
    elif ctx == "log":
        text = f"{pick(TS)} WARN  sms: delivery failed to {p} (carrier timeout)"
    elif ctx == "yaml":
        text = f"oncall:\n  primary: Ops desk\n  phone: \"{p}\""
    elif ctx == "prose":
        text = f"Call me at {p} when the deploy is done."
    elif ctx == "env":
        text = f"SUPPORT_PHONE=\"{p}\""
    else:
        text = f"https://{pick(HOSTS)}/callback?number={pct(p)}"
    return text, [p], ()


def ipv4() -> str:
    net = pick(("192.0.2", "198.51.100", "203.0.113"))
    return f"{net}.{rng.randint(2, 254)}"


def ipv4_line(ctx: str):
    ip = ipv4()
    if ctx == "json":
        text = json.dumps({"tool": "add_firewall_rule", "source": ip, "port": 443, "action": "allow"})
    elif ctx == "sql":
        text = f"SELECT count(*) FROM logins WHERE remote_addr = '{ip}';"
    elif ctx == "log":
        text = f"{pick(TS)} WARN  ratelimit: 429 for client {ip} on /v1/search"
    elif ctx == "shell":
        text = f"ssh -p 2222 deploy@{ip} 'systemctl restart api'"
    elif ctx == "yaml":
        text = f"upstream:\n  host: {ip}\n  port: 8443"
    elif ctx == "prose":
        text = f"The requests all come from {ip}, can we block it?"
    else:
        text = f"https://{pick(HOSTS)}/geo?ip={pct(ip)}"
    return text, [ip], ()


def ipv6() -> str:
    g = lambda: f"{rng.randint(0x10, 0xffff):x}"
    return pick((
        f"2001:db8:{g()}:{g()}::{g()}:{g()}",
        f"2001:db8::{g()}",
        f"2001:db8:{g()}:{g()}:{g()}:{g()}:{g()}:{g()}",
    ))


def ipv6_line(ctx: str):
    ip = ipv6()
    if ctx == "json":
        text = json.dumps({"tool": "add_firewall_rule", "source": ip, "port": 22, "action": "deny"})
    elif ctx == "sql":
        text = f"INSERT INTO blocked_addresses (addr, reason) VALUES ('{ip}', 'abuse');"
    elif ctx == "log":
        text = f"{pick(TS)} INFO  http: GET /healthz from {ip} 200"
    elif ctx == "yaml":
        text = f"listen:\n  address: \"{ip}\"\n  port: 8080"
    elif ctx == "prose":
        text = f"The node's public address is {ip}, add it to the allow-list."
    elif ctx == "shell":
        text = f"ping -6 -c 3 {ip}"
    else:
        text = f"https://{pick(HOSTS)}/geo?ip={pct(ip)}"
    return text, [ip], ()


LOW_CONTEXTS = ("json", "sql", "log", "yaml", "prose", "shell", "url")


def combos() -> None:
    """A few lines that carry two detectors."""
    k, v = aws_key_id(), aws_secret()
    text = json.dumps({"path": "/home/dev/.aws/credentials",
                       "content": f"[prod]\naws_access_key_id = {k}\naws_secret_access_key = {v}\n"})
    add("combo", "json", text, ["aws_access_key_id", "aws_secret_access_key"], [k, v])
    g, w = github(), slack_webhook()
    text = f"GITHUB_TOKEN={g}\nSLACK_WEBHOOK_URL={w}\nLOG_LEVEL=debug"
    add("combo", "env", text, ["github_token", "slack_webhook"], [g, w])
    pre, pw, suf, c = conn_string()
    st = stripe()
    text = f"services:\n  api:\n    environment:\n      DATABASE_URL: {c}\n      STRIPE_SECRET_KEY: {st}"
    add("combo", "yaml", text, ["connection_string_password", "stripe_secret_key"], [pw, st])
    # JSON members: the key names carry the context.
    k, v = aws_key_id(), aws_secret()
    text = json.dumps({"tool": "configure_profile", "profile": "deploy",
                       "credentials": {"AccessKeyId": k, "SecretAccessKey": v,
                                       "Expiration": "2026-11-22T11:30:00Z"}})
    add("combo", "json", text, ["aws_access_key_id", "aws_secret_access_key"], [k, v])
    pw, t = basic_auth()
    text = json.dumps({"tool": "http_request", "method": "GET", "url": "https://api.example.com/metrics",
                       "headers": {"Authorization": f"Basic {t}", "Accept": "text/plain"}})
    add("basic_auth_header", "json", text, ["basic_auth_header"], [t])
    for r in RECORDS[-5:]:
        assert not stray_findings(r["text"], r["context"], set(r["expect"])), r


def build_all() -> None:
    tok("aws_access_key_id", "AWS_ACCESS_KEY_ID", aws_key_id)
    tok("gcp_api_key", "GOOGLE_API_KEY", gcp_key)
    tok("google_oauth_token", "GOOGLE_OAUTH_ACCESS_TOKEN", google_oauth)
    tok("github_token", "GITHUB_TOKEN", github)
    tok("gitlab_token", "GITLAB_TOKEN", gitlab)
    tok("npm_token", "NPM_TOKEN", npm)
    tok("pypi_token", "TWINE_PASSWORD", pypi)
    tok("slack_token", "SLACK_BOT_TOKEN", slack_token)
    tok("slack_webhook", "SLACK_WEBHOOK_URL", slack_webhook)
    tok("discord_webhook", "DISCORD_WEBHOOK_URL", discord_webhook)
    tok("openai_api_key", "OPENAI_API_KEY", openai)
    tok("anthropic_api_key", "ANTHROPIC_API_KEY", anthropic)
    tok("huggingface_token", "HF_TOKEN", huggingface)
    tok("stripe_secret_key", "STRIPE_SECRET_KEY", stripe)
    tok("sendgrid_api_key", "SENDGRID_API_KEY", sendgrid)
    tok("twilio_api_key", "TWILIO_API_KEY", twilio)
    positive("aws_secret_access_key", aws_secret_line)
    positive("azure_storage_key", azure_line)
    positive("private_key", private_key_line)
    positive("jwt", jwt_line)
    positive("connection_string_password", conn_line)
    positive("basic_auth_header", basic_line)
    positive("credit_card", card_line)
    positive("iban", iban_line)
    positive("us_ssn", ssn_line)
    positive("generic_credential", generic_line)
    positive("high_entropy_secret", entropy_line)
    combos()
    positive("email", email_line, LOW_CONTEXTS)
    positive("phone_number", phone_line, ("json", "sql", "log", "yaml", "prose", "env", "url"))
    positive("ipv4_address", ipv4_line, LOW_CONTEXTS)
    positive("ipv6_address", ipv6_line, LOW_CONTEXTS)


# --------------------------------------------------------------------------
# Hard negatives
# --------------------------------------------------------------------------

def ctx_wrap(ctx: str, key: str, value: str) -> str:
    """Places a harmless `key`/`value` pair in context `ctx`."""
    if ctx == "json":
        return json.dumps({"tool": "write_file", "path": "notes/values.txt", key: value})
    if ctx == "sql":
        return f"SELECT * FROM records WHERE {key} = '{value}';"
    if ctx == "shell":
        return f"./bin/lookup --{key.replace('_', '-')} '{value}'"
    if ctx == "log":
        return f"{pick(TS)} INFO  api: processed {key}={value}"
    if ctx == "env":
        return f"{key.upper()}={value}"
    if ctx == "yaml":
        return f"item:\n  {key}: \"{value}\""
    if ctx == "prose":
        return f"The {key.replace('_', ' ')} in question is {value}, see the ticket."
    if ctx == "base64":
        return json.dumps({"attachment": "row.txt", "data": b64(f"{key}: {value}")})
    return f"https://{pick(HOSTS)}/find?{key}={urllib.parse.quote(value, safe='')}"


def bad_luhn(prefix: str, n: int) -> str:
    while True:
        d = prefix + "".join(pick(DIGITS) for _ in range(n - len(prefix)))
        if not luhn_ok(d) and acceptable(d):
            return d


def hexstr(n: int) -> str:
    return rand_str(HEX, n, (DIGITS, "abcdef"))


def uuid4() -> str:
    h = [pick(HEX) for _ in range(32)]
    h[12] = "4"
    h[16] = pick("89ab")
    h = "".join(h)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def bad_iban() -> str:
    while True:
        raw = iban_raw()
        cd = f"{rng.randint(2, 98):02d}"
        bad = raw[:2] + cd + raw[4:]
        if not iban_ok(bad) and not list(card_spans(group4(bad))):
            return bad


def bad_ssn() -> str:
    kind = pick(("area0", "area666", "area9", "group0", "serial0"))
    a, g, n = rng.randint(1, 665), rng.randint(1, 99), rng.randint(1, 9999)
    if kind == "area0":
        a = 0
    elif kind == "area666":
        a = 666
    elif kind == "area9":
        a = rng.randint(900, 999)
    elif kind == "group0":
        g = 0
    else:
        n = 0
    return f"{a:03d}-{g:02d}-{n:04d}"


ORDINARY = (
    "hello world, this is a normal sentence",
    "The quarterly report is attached; numbers look fine.",
    "Remember to water the plants on Thursday.",
    "Build finished in 42 seconds with 0 warnings.",
    "Meeting moved to the small room on the second floor.",
    "release notes: fixed the flaky retry test and bumped deps",
    "id,name,qty\n1,widget,4\n2,gadget,7\n",
    "Dear team, the office is closed on Monday.",
    "SELECT name FROM products ORDER BY name;",
    "lorem ipsum dolor sit amet, consectetur adipiscing elit",
    "{\"status\": \"ok\", \"items\": 12}",
    "user-agent: curl/8.5.0",
    "The cat sat on the mat and looked out of the window.",
    "TODO: write docs for the export command",
    "Shipping label printed for parcel 7 of 9.",
)

PLACEHOLDER_LINES = (
    ("env", "OPENAI_API_KEY=YOUR_API_KEY"),
    ("env", "GITHUB_TOKEN=<your-token>"),
    ("env", "API_KEY=xxxxxxxxxxxx"),
    ("env", "DB_PASSWORD=changeme"),
    ("env", "SECRET=${SECRET}"),
    ("env", "OPENAI_API_KEY=sk-..."),
    ("env", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"),
    ("env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("env", "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"),
    ("env", "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("env", "SLACK_BOT_TOKEN=xoxb-your-bot-token"),
    ("env", "DATABASE_URL=postgres://user:${PGPASSWORD}@db/app"),
    ("env", "REDIS_URL=redis://cache:6379/0"),
    ("env", "HF_TOKEN=hf_your_token_here"),
    ("env", "SENDGRID_API_KEY=SG.your-key-here"),
    ("env", "AUTH_TOKEN=\"\""),
    ("yaml", "auth:\n  password: \"${DB_PASSWORD}\""),
    ("yaml", "database:\n  password: ********\n  user: app"),
    ("yaml", "slack:\n  token: \"{{ token }}\""),
    ("yaml", "api:\n  key: <your-api-key>\n  timeout: 30"),
    ("yaml", "smtp:\n  password: changeme"),
    ("yaml", "db:\n  password: \"{{ vault_db_password }}\""),
    ("yaml", "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-credentials\n        key: password"),
    ("yaml", "openai:\n  api_key: sk-...\n  model: gpt-4o"),
    ("yaml", "webhook:\n  url: https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("json", json.dumps({"password": ""})),
    ("json", json.dumps({"password": "${DB_PASSWORD}"})),
    ("json", json.dumps({"api_key": "YOUR_API_KEY", "region": "eu-west-1"})),
    ("json", json.dumps({"token": "<your-token>"})),
    ("json", json.dumps({"client_secret": "********"})),
    ("json", json.dumps({"db_password": "changeme", "db_user": "app"})),
    ("json", json.dumps({"secret": "{{ token }}"})),
    ("json", json.dumps({"auth_token": "xxxxxxxxxxxx"})),
    ("json", json.dumps({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})),
    ("json", json.dumps({"path": "/app/.env.example", "content": "API_KEY=\nDB_PASSWORD=\nSECRET_KEY=change_me\n"})),
    ("json", json.dumps({"password": "<redacted>"})),
    ("json", json.dumps({"headers": {"Authorization": "Bearer ${TOKEN}"}})),
    ("log", f"{TS[0]} INFO  login ok for admin password=<redacted>"),
    ("log", f"{TS[1]} DEBUG db: connecting with password=********"),
    ("log", f"{TS[2]} INFO  config: api_key=[REDACTED] token=[REDACTED]"),
    ("log", f"{TS[3]} WARN  using default password=changeme, please rotate"),
    ("shell", "export OPENAI_API_KEY=\"$OPENAI_API_KEY\""),
    ("shell", "curl -H \"Authorization: Bearer ${API_TOKEN}\" https://api.example.com/v1/me"),
    ("shell", "curl -H 'Authorization: Basic $BASIC_AUTH' https://api.example.com/v1/me"),
    ("shell", "export GITHUB_TOKEN=$(gh auth token)"),
    ("shell", "psql postgres://db:5432/app -c 'select 1'"),
    ("shell", "aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE"),
    ("sql", "UPDATE users SET password = '********' WHERE id = 5;"),
    ("sql", "INSERT INTO settings (name, value) VALUES ('api_key', 'YOUR_API_KEY');"),
    ("sql", "UPDATE connectors SET config = 'password=${WAREHOUSE_PASSWORD}' WHERE id = 2;"),
    ("prose", "Set OPENAI_API_KEY to sk-... (your key from the dashboard) before running the script."),
    ("prose", "Replace <your-token> with a personal access token that has repo scope."),
    ("prose", "The example key AKIAIOSFODNN7EXAMPLE in the AWS docs is not a real credential."),
    ("prose", "Use password=<redacted> in bug reports, never the real value."),
    ("url", "https://api.example.com/v1/search?api_key=YOUR_API_KEY&q=shoes"),
    ("url", "https://api.example.com/callback?token=%3Cyour-token%3E"),
    ("url", "https://ci.example.net/connect?dsn=postgres%3A%2F%2Fdb%3A5432%2Fapp"),
)

NO_PASSWORD_CONN = (
    "postgres://db:5432/app",
    "postgresql://localhost/analytics",
    "mysql://mysql-0:3306/shop",
    "mongodb+srv://cluster0/events?retryWrites=true",
    "redis://cache:6379/0",
    "amqp://rabbitmq:5672/jobs",
    "postgres://user:${PGPASSWORD}@db/app",
    "mysql://root:<password>@mysql-0/shop",
    "postgres://app:********@db-primary:5432/orders",
    "redis://default:changeme@cache:6379/0",
    "postgres://reporting:$REPORTING_PW@pg-replica-2/analytics",
    "mongodb://app:{{ mongo_password }}@mongo-0/events",
)

PROSE = (
    "Rotate the token weekly and revoke the old one.",
    "The password must be 12 characters and include a digit.",
    "Store the API key in the vault, never in the repository.",
    "We should add secret scanning to the pre-commit hook.",
    "Access keys older than 90 days are flagged by the audit.",
    "The private key never leaves the HSM.",
    "Ask an admin to reset your password if you are locked out.",
    "Tokens expire after one hour; the client refreshes them automatically.",
    "Use a connection string from the secrets manager instead of hardcoding it.",
    "Card numbers are tokenised by the payment provider before they reach us.",
    "The IBAN field is validated on the server with the mod-97 check.",
    "Never paste a social security number into a support ticket.",
    "The webhook URL is configured per workspace in the admin panel.",
    "JWTs are signed with a key that rotates every month.",
    "Could you explain how the signing key is derived from the master secret?",
    "Password reset emails are rate limited to three per hour.",
    "If the api key leaks, revoke it in the console and issue a new one.",
    "The auth middleware rejects requests without a bearer token.",
    "Our policy: passwords are hashed with argon2id, never logged.",
    "Set the token lifetime to 15 minutes for service accounts.",
    "I forgot my password again, the reset link says it expired.",
    "Encrypt the backup with the customer managed key before upload.",
    "The secret rotation job failed last night, see the runbook.",
    "Generate a new deploy key for the staging repository.",
    "Please do not commit credentials; use environment variables.",
)

LOWERCASE_VALUES = (
    ("yaml", "password: required"),
    ("yaml", "api_key: optional"),
    ("yaml", "client_secret: provided"),
    ("yaml", "auth_token: disabled"),
    ("yaml", "token: rotating\nttl: 3600"),
    ("yaml", "password_policy:\n  min_length: 12\n  require_digit: true"),
    ("yaml", "secret: none"),
    ("log", f"{TS[0]} INFO  schema: field password: required, field email_verified: boolean"),
    ("env", "PASSWORD_MIN_LENGTH=12"),
    ("env", "TOKEN_TTL_SECONDS=3600"),
    ("json", json.dumps({"type": "object", "properties": {"password": {"type": "string", "minLength": 12}}, "required": ["password"]})),
    ("json", json.dumps({"api_key_header": "X-Api-Key", "token_location": "header"})),
    ("json", json.dumps({"password": "required", "token": "optional"})),
    ("json", json.dumps({"max_tokens": 4096, "temperature": 0.2, "model": "claude-sonnet"})),
    ("prose", "The form shows password: required and username: optional."),
    ("shell", "grep -rn 'password:' config/ | wc -l"),
)

TOOL_ARGS = (
    {"tool": "read_file", "path": "src/lib.rs"},
    {"tool": "read_file", "path": "crates/behavry-dlp/src/scan.rs", "start_line": 120, "end_line": 180},
    {"tool": "search", "query": "fn parse_token", "path": "src"},
    {"tool": "search", "query": "password reset flow", "max_results": 20},
    {"tool": "grep", "pattern": "api_key", "glob": "**/*.py"},
    {"command": "git log --oneline -n 20"},
    {"command": "git log --since=2026-11-01 --author=jrivera --format=%h%x20%s"},
    {"command": "git diff HEAD~3 -- src/auth/token.rs"},
    {"command": "cargo test -p behavry-dlp --test corpus"},
    {"command": "ls -la /var/log/nginx"},
    {"tool": "list_directory", "path": "config/"},
    {"tool": "write_file", "path": "docs/security.md", "content": "# Security\n\nReport issues through the security form.\n"},
    {"tool": "http_request", "method": "GET", "url": "https://api.example.com/v1/status"},
    {"tool": "create_issue", "title": "Rotate staging credentials", "labels": ["security", "ops"]},
    {"tool": "run_query", "sql": "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'"},
    {"tool": "kubectl", "args": ["get", "pods", "-n", "payments", "-o", "wide"]},
    {"tool": "edit_file", "path": "src/config.rs", "old": "timeout: 30", "new": "timeout: 60"},
    {"tool": "read_file", "path": "/etc/hosts.allow"},
    {"tool": "search", "query": "how to rotate the signing key", "path": "docs"},
    {"tool": "fetch_metrics", "service": "checkout", "window": "15m", "percentile": 99},
    {"tool": "git", "args": ["log", "-p", "--follow", "src/secrets/mod.rs"]},
    {"tool": "open_pr", "branch": "fix/token-refresh", "base": "main", "draft": True},
    {"tool": "read_file", "path": "package.json"},
    {"tool": "search", "query": "TODO remove hardcoded", "path": "."},
    {"tool": "list_secrets", "vault": "prod", "names_only": True},
    {"cache_key": "user:42:profile", "ttl": 300},
    {"primary_key": "id", "sort_key": "created_at"},
    {"keyboard_layout": "de-nodeadkeys", "locale": "de_DE.UTF-8"},
    {"auth": {"type": "oauth2", "flow": "authorization_code", "scopes": ["read", "write"]}},
    {"author": "jrivera", "message": "fix: refresh tokens before expiry"},
    {"tool": "npm", "args": ["install", "--save-dev", "@types/node"]},
    {"tool": "python", "code": "from huggingface_hub import hf_hub_download\nprint(hf_hub_download('gpt2', 'config.json'))"},
    {"tool": "shell", "command": "npm_config_cache=/tmp/.npm npm ci"},
    {"tool": "read_file", "path": "src/auth/secret_store.rs"},
)

PATHS = (
    "/home/dev/.ssh/id_rsa.pub",
    "config/secrets.yaml",
    "src/auth/token.rs",
    "/etc/ssl/certs/ca-certificates.crt",
    "~/.aws/config",
    "infra/terraform/modules/kms/main.tf",
    "/var/lib/postgresql/16/main/pg_hba.conf",
    "C:\\Users\\dev\\AppData\\Roaming\\npm\\npmrc",
    "tests/fixtures/password_policy.json",
    ".github/workflows/rotate-keys.yml",
    "/run/secrets/db_password",
    "docs/adr/0007-api-key-format.md",
)

VERSIONS = (
    "v1.2.3", "1.83.0", "node 22.11.0", "2.0.0-rc.1", "v0.14.7+build.52", "python 3.11.7",
    "openssl 3.0.13", "rustc 1.83.0 (90b35a623 2024-11-26)", "libssl3 3.0.2-0ubuntu1.18", "v10.4.1",
)


def public_pem(kind: str) -> str:
    body = base64.b64encode(rng.randbytes(48 * 4)).decode()
    return f"-----BEGIN {kind}-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + f"\n-----END {kind}-----"


def build_negatives() -> None:
    C = CONTEXTS
    # Luhn failures (16 digits, card-like prefixes, sometimes grouped).
    for i in range(24):
        d = bad_luhn(pick(("4", "51", "53", "55", "6011", "37")), 16)
        w = d if i % 3 == 0 else (group4(d) if i % 3 == 1 else "-".join(d[j:j + 4] for j in range(0, 16, 4)))
        negative("luhn", C[i % 9], ctx_wrap(C[i % 9], pick(("order_number", "reference", "tracking_number", "account_ref")), w))
    # Order numbers and invoice ids.
    for i in range(14):
        w = pick((f"ORD-2026-{digits(6, DIGITS)}", f"INV-{digits(8)}", f"#{digits(9)}", f"PO{digits(7)}",
                  f"SO-{digits(4)}-{digits(5, DIGITS)}"))
        negative("order", C[(i + 2) % 9], ctx_wrap(C[(i + 2) % 9], pick(("order_id", "invoice", "reference")), w))
    # Unix timestamps (seconds and milliseconds).
    for i in range(14):
        ts = 1763800000 + rng.randint(0, 5000000)
        w = str(ts) if i % 2 else str(ts) + f"{rng.randint(0, 999):03d}"
        ctx = C[(i + 4) % 9]
        if ctx == "json":
            text = json.dumps({"event": "deploy", "created_at": int(w), "duration_ms": rng.randint(100, 9000)})
        else:
            text = ctx_wrap(ctx, pick(("timestamp", "created_at", "expires_at", "last_seen")), w)
        negative("timestamp", ctx, text)
    # UUIDs.
    for i in range(14):
        negative("uuid", C[(i + 1) % 9], ctx_wrap(C[(i + 1) % 9], pick(("request_id", "trace_id", "tenant_id", "job_id")), uuid4()))
    # Digests and commit hashes.
    for i in range(28):
        kind = pick(("md5", "sha1", "sha256", "commit", "short"))
        n = {"md5": 32, "sha1": 40, "sha256": 64, "commit": 40, "short": 7}[kind]
        h = hexstr(n)
        ctx = C[(i + 3) % 9]
        if kind == "sha256" and i % 4 == 0:
            text = ctx_wrap(ctx, "image", f"ghcr.io/acme/api@sha256:{h}")
        elif kind in ("commit", "short") and ctx in ("shell", "prose", "log"):
            text = {"shell": f"git show --stat {h}", "prose": f"The regression came in with commit {h}, please revert it.",
                    "log": f"{pick(TS)} INFO  deploy: rolled out revision {h}"}[ctx]
        else:
            text = ctx_wrap(ctx, {"md5": "md5", "sha1": "sha1", "sha256": "checksum", "commit": "commit", "short": "revision"}[kind], h)
        negative("digest", ctx, text)
    # Base64 of ordinary text.
    for i, line in enumerate(ORDINARY):
        enc = b64(line)
        text = pick((
            json.dumps({"path": "notes/msg.b64", "content": enc}),
            f"echo {enc} | base64 -d",
            f"payload: {enc}",
        ))
        negative("base64-text", "base64", text)
    # IBAN-shaped with wrong check digits.
    for i in range(15):
        w = bad_iban()
        w = group4(w) if i % 2 else w
        ctx = C[(i + 5) % 9]
        if ctx == "url":
            text = f"https://{pick(HOSTS)}/pay?iban={w.replace(' ', '%20')}"
        else:
            text = ctx_wrap(ctx, pick(("iban", "account")), w)
        negative("iban-check", ctx, text)
    # SSN-shaped but invalid.
    for i in range(16):
        negative("ssn-invalid", C[(i + 6) % 9], ctx_wrap(C[(i + 6) % 9], pick(("ssn", "tax_id", "reference")), bad_ssn()))
    # Placeholders.
    for ctx, text in PLACEHOLDER_LINES:
        negative("placeholder", ctx, text)
    # Connection strings without a (real) password.
    for i, c in enumerate(NO_PASSWORD_CONN):
        ctx = pick(("env", "yaml", "shell", "log", "json"))
        if ctx == "env":
            text = f"DATABASE_URL={c}"
        elif ctx == "yaml":
            text = f"datasource:\n  url: \"{c}\""
        elif ctx == "shell":
            text = f"./bin/check-db --url \"{c}\" --timeout 5"
        elif ctx == "log":
            text = f"{pick(TS)} INFO  db: pool ready for {c}"
        else:
            text = json.dumps({"name": "set_env", "key_name": "DATABASE_URL", "value": c})
        negative("conn-no-password", ctx, text)
    # Versions.
    for i, v in enumerate(VERSIONS):
        ctx = C[i % 7]
        negative("version", ctx, ctx_wrap(ctx, "version", v))
    # Prose about credentials without values.
    for line in PROSE:
        negative("prose", "prose", line)
    # Lower-case words after credential keys.
    for ctx, text in LOWERCASE_VALUES:
        negative("lowercase-value", ctx, text)
    # Ordinary tool arguments.
    for args in TOOL_ARGS:
        negative("tool-args", "json", json.dumps(args))
    # File paths.
    for i, pth in enumerate(PATHS):
        ctx = pick(("json", "shell", "prose", "log"))
        text = {"json": json.dumps({"tool": "read_file", "path": pth}),
                "shell": f"ls -l '{pth}'",
                "prose": f"The file {pth} is referenced in the setup guide.",
                "log": f"{pick(TS)} DEBUG fs: opened {pth}"}[ctx]
        negative("path", ctx, text)
    # Short ids.
    for i in range(12):
        sid = pick(("req_", "usr_", "job-", "cus_", "evt_", "pi_")) + rand_str(LOWER + DIGITS, rng.randint(4, 8), (DIGITS,))
        ctx = C[i % 9]
        negative("short-id", ctx, ctx_wrap(ctx, pick(("id", "ref", "customer")), sid))
    # Dates and times.
    dates = ("2026-11-22", "10:30:00", "2026-11-22T10:30:00Z", "22.11.2026", "11/22/2026",
             "2026-11-22 10:30:00.123", "Sun, 22 Nov 2026 10:30:00 GMT", "2026-W47", "23:59:59", "P1DT2H30M")
    for i, d in enumerate(dates):
        ctx = C[i % 9]
        negative("date", ctx, ctx_wrap(ctx, pick(("date", "scheduled_at", "window")), d))
    # Random-looking ids under names that are not secrets.
    for i, name in enumerate(("request_id", "trace_id", "correlation_id", "build_id", "upload_id", "session_id_hash", "etag", "object_version")):
        ctx = C[i % 9]
        val = mixed(ALNUM, rng.randint(24, 36)) if i % 2 == 0 else hexstr(32)
        if ctx == "url":
            text = f"https://{pick(HOSTS)}/objects?{name}={val}"
        else:
            text = ctx_wrap(ctx, name, val)
        negative("random-id", ctx, text)
    # Public material that looks like a private key.
    for kind, ctx in (("PUBLIC KEY", "json"), ("CERTIFICATE", "yaml"), ("PUBLIC KEY", "prose"), ("CERTIFICATE", "shell")):
        k = public_pem(kind)
        text = {"json": json.dumps({"path": "certs/server.pub", "content": k}),
                "yaml": "tls:\n  ca_pem: |\n" + "\n".join("    " + l for l in k.split("\n")),
                "prose": f"Here is our public key, add it to the allow-list:\n{k}",
                "shell": f"cat > ca.crt <<'EOF'\n{k}\nEOF"}[ctx]
        negative("public-pem", ctx, text)
    # Numbers in JSON, ports, sizes and other harmless figures.
    misc = (
        ("json", json.dumps({"amount": 4200, "currency": "EUR", "quantity": 3})),
        ("json", json.dumps({"port": 5432, "max_connections": 200, "timeout_ms": 30000})),
        ("yaml", "resources:\n  limits:\n    memory: 512Mi\n    cpu: 500m"),
        ("log", f"{TS[2]} INFO  gc: heap 734003200 bytes, pause 12ms"),
        ("shell", "docker run -p 8080:80 -m 512m nginx:1.27"),
        ("prose", "We processed 1,284,551 orders in October, up 12% from September."),
        ("sql", "SELECT sku, sum(qty) FROM order_lines GROUP BY sku HAVING sum(qty) > 1000;"),
        ("env", "MAX_UPLOAD_BYTES=10485760\nWORKERS=8"),
        ("log", f"{TS[1]} INFO  mac 00:1a:2b:3c:4d:5e joined vlan 20"),
        ("yaml", "colors:\n  primary: \"#1e90ff\"\n  accent: \"#ff7f50\""),
    )
    for ctx, text in misc:
        negative("misc", ctx, text)


# --------------------------------------------------------------------------
# Validation and output
# --------------------------------------------------------------------------

def validate() -> tuple[Counter, int]:
    ids = [r["id"] for r in RECORDS]
    assert len(ids) == len(set(ids)), "duplicate ids"
    counts: Counter = Counter()
    negatives = 0
    for r, m in zip(RECORDS, META):
        assert set(r) == {"id", "context", "text", "expect"}
        assert r["context"] in CONTEXTS
        for e in r["expect"]:
            assert e in DETECTORS, e
            counts[e] += 1
        if not r["expect"]:
            negatives += 1
        problems = stray_findings(r["text"], r["context"], set(r["expect"]))
        assert not problems, (r["id"], problems)
        vs = views(r["text"], r["context"])
        for s in m["secrets"]:
            assert any(s in v for v in vs), (r["id"], s)
            if r["context"] == "url":
                assert s not in r["text"], ("url secret not encoded", r["id"])
            if r["context"] == "base64":
                assert s not in r["text"], ("base64 secret not encoded", r["id"])
        if "credit_card" in r["expect"]:
            for s in m["secrets"]:
                assert is_card(re.sub(r"[ \-]", "", s)), (r["id"], s)
        if "iban" in r["expect"]:
            for s in m["secrets"]:
                assert iban_ok(s), (r["id"], s)
        if "us_ssn" in r["expect"]:
            for s in m["secrets"]:
                assert ssn_ok(s), (r["id"], s)
    return counts, negatives


def main() -> int:
    build_all()
    build_negatives()
    counts, negatives = validate()
    width = max(len(d) for d in DETECTORS)
    print(f"{'detector':<{width}}  positives")
    short = []
    for d in DETECTORS:
        need = 6 if d in LOW else 8
        flag = "" if counts[d] >= need else f"  < {need}"
        if flag:
            short.append(d)
        print(f"{d:<{width}}  {counts[d]:>5}{flag}")
    print(f"{'(negatives)':<{width}}  {negatives:>5}{'' if negatives >= 250 else '  < 250'}")
    print(f"{'(total lines)':<{width}}  {len(RECORDS):>5}")
    by_ctx = Counter(r["context"] for r in RECORDS)
    print("contexts: " + ", ".join(f"{c}={by_ctx[c]}" for c in CONTEXTS))
    kinds = Counter(r["id"].rsplit("-", 2)[0] for r in RECORDS if not r["expect"])
    print("negatives: " + ", ".join(f"{k[4:]}={n}" for k, n in sorted(kinds.items())))
    if short or negatives < 250:
        print("INCOMPLETE, not written: " + ", ".join(short + (["negatives"] if negatives < 250 else [])),
              file=sys.stderr)
        return 1
    with OUT.open("w", encoding="utf-8", newline="\n") as f:
        for r in RECORDS:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(RECORDS)} lines to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

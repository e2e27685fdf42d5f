"""Built-in detectors that turn a request and a response text into policy signals.

`detect(request_text, response_text)` runs every detector in process, offline and fast (no model,
no network): PII (e-mail, phone numbers through `phonenumbers`, payment cards validated by Luhn and
Korean resident registration numbers by their check digit through `python-stdnum`), secrets and API
keys, prompt-injection phrases (English and Korean, request only), invisible Unicode used to smuggle
text, risky financial promises, and refusals (response only).

`Signals.context()` is what policies read under `signals.`; `Signals.masked()` is what a decision
stores and logs. A finding keeps its kind, which text it was in, and its code-point offsets there,
never the raw value: PII and secrets are masked here, phrase detectors report the name of the phrase
rule that matched. Nothing in this module may log, store or return the raw matched text.

Speed matters (the heuristic decision's p99 budget is 1 ms for ~2 KB texts): regexes are compiled
once, each detector is gated by a cheap substring or character pre-filter, and `phonenumbers` only
sees short digit runs of phone length.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Any, TypedDict

import phonenumbers
from stdnum import luhn
from stdnum.kr import rrn

# The detectors' revision, stored with each decision's signals: a backtest reuses a trace's stored
# signals instead of detecting again only if they are of this revision. Raise it with any change
# that can change what the detectors find.
REVISION = 1

PII_KINDS = ("email", "phone", "card", "kr_rrn")
KINDS = (
    *PII_KINDS,
    "secret",
    "prompt_injection",
    "unicode_tags",
    "invisible_chars",
    "financial_risk",
    "refusal",
)


class MaskedFinding(TypedDict):
    kind: str
    where: str  # "request" | "response"
    start: int
    end: int
    masked: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: `start`/`end` are code-point offsets (end exclusive) into the `where` text."""

    kind: str
    where: str
    start: int
    end: int
    masked: str
    detail: str | None = None

    def as_dict(self) -> MaskedFinding:
        return {
            "kind": self.kind,
            "where": self.where,
            "start": self.start,
            "end": self.end,
            "masked": self.masked,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Signals:
    findings: tuple[Finding, ...]

    def kinds(self) -> list[str]:
        found = {f.kind for f in self.findings}
        return [k for k in KINDS if k in found]

    def context(self) -> dict[str, Any]:
        """The mapping policies read under `signals.` (every key always present)."""
        counts = dict.fromkeys(KINDS, 0)
        request_kinds: set[str] = set()
        response_kinds: set[str] = set()
        secret_kinds: set[str] = set()
        for f in self.findings:
            counts[f.kind] += 1
            (request_kinds if f.where == "request" else response_kinds).add(f.kind)
            if f.kind == "secret" and f.detail:
                secret_kinds.add(f.detail)
        context: dict[str, Any] = {kind: counts[kind] > 0 for kind in KINDS}
        pii_kinds = [k for k in PII_KINDS if counts[k]]
        context.update(
            pii=bool(pii_kinds),
            pii_kinds=pii_kinds,
            secret_kinds=sorted(secret_kinds),
            kinds=self.kinds(),
            request_kinds=[k for k in KINDS if k in request_kinds],
            response_kinds=[k for k in KINDS if k in response_kinds],
            counts=counts,
        )
        return context

    def masked(self) -> list[MaskedFinding]:
        """The findings for the decision log, in text order (request first)."""
        return [f.as_dict() for f in self.findings]


def detect(request_text: str | None, response_text: str | None) -> Signals:
    findings: list[Finding] = []
    if request_text:
        findings.extend(_scan(request_text, "request"))
    if response_text:
        findings.extend(_scan(response_text, "response"))
    return Signals(tuple(findings))


def _scan(text: str, where: str) -> list[Finding]:
    lowered = text.lower()
    secrets = _secrets(text, where)
    # Digits inside a key or token are part of the secret, not a card or phone number of their own.
    found = [f for f in _numbers(text, where) if not _overlaps(f.start, f.end, secrets)] + secrets
    if "@" in text:
        found += _emails(text, where)
    if not text.isascii() and (_INVISIBLE_BMP.search(text) or _INVISIBLE_ASTRAL.search(text)):
        found += _invisible(text, where)
    found += _phrases("financial_risk", text, lowered, where)
    if where == "request":
        found += _phrases("prompt_injection", text, lowered, where)
    else:
        found += _phrases("refusal", text, lowered, where)
    found.sort(key=lambda f: (f.start, f.end))
    return found


def _overlaps(start: int, end: int, findings: list[Finding]) -> bool:
    return any(start < f.end and f.start < end for f in findings)


_DIGIT = re.compile("[0-9]")


def _mask_digits(value: str, keep: int) -> str:
    """Every digit but the last `keep` becomes '*'; separators stay, so the shape is recognisable."""
    digits = [m.start() for m in _DIGIT.finditer(value)]
    cut = digits[-keep] if len(digits) > keep else 0
    return _DIGIT.sub("*", value[:cut]) + value[cut:]


# --- e-mail ------------------------------------------------------------------------------------------

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def _emails(text: str, where: str) -> list[Finding]:
    # Anchored on each "@": the local part is walked back from it, the domain matched forward, so
    # the cost follows the number of "@", not the length of the text.
    found = []
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        while start < at and text[start] == ".":
            start += 1
        domain = _DOMAIN.match(text, at + 1)
        if domain and start < at and (start == 0 or text[start - 1] not in _LOCAL_CHARS):
            local, host = text[start:at], domain.group()
            masked = f"{local[0]}***@{host[0]}***.{host.rsplit('.', 1)[-1]}"
            found.append(Finding("email", where, start, domain.end(), masked))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)
    return found


# --- numbers: cards, resident registration numbers, phones ------------------------------------------

# One pass finds every run of digits and number punctuation; the detectors below only look inside
# runs with enough digits, which ordinary prose rarely has.
_NUMBER_RUN = re.compile(r"[0-9][0-9 ().\-]{6,}[0-9]")
_NUMBER_PUNCTUATION = str.maketrans("", "", " ().-")
# 13-19 digits as one run, in groups of four (4242 4242 4242 4242) or as Amex's 4-6-5, with one kind
# of separator, so a trailing "12/26" or a longer hyphenated id is not taken into the number.
_CARD = re.compile(
    r"(?<![0-9])(?<![0-9]-)(?:[0-9]{13,19}|[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{1,7}|"
    r"[0-9]{4}([ -])[0-9]{6}\2[0-9]{4,5})(?![0-9]|-[0-9])"
)
# Major networks' leading digits (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay): a random
# digit run passes Luhn one time in ten, so the prefix keeps order and tracking numbers out.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[0478]|6")
# YYMMDD, an optional hyphen, then the century/gender digit and six more (971013-9019902).
_RRN = re.compile(r"(?<![0-9])[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]) ?-? ?[0-9]{7}(?![0-9])")
_DATE = re.compile(r"[0-9]{4}[-.][0-9]{1,2}[-.][0-9]{1,2}|[0-9]{1,2}[-.][0-9]{1,2}[-.][0-9]{4}")


def _numbers(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    # A conversation repeats its numbers (each turn carries the history): parse each once per text.
    parsed: dict[str, phonenumbers.PhoneNumber | None] = {}
    for run in _NUMBER_RUN.finditer(text):
        digits = len(run.group().translate(_NUMBER_PUNCTUATION))
        if digits < 8:
            continue
        start, end = run.span()
        taken: list[Finding] = []
        if digits >= 13:
            for m in _RRN.finditer(text, start, end):
                if rrn.is_valid(m.group().replace(" ", "")):
                    taken.append(Finding("kr_rrn", where, m.start(), m.end(), "******-*******"))
            for m in _CARD.finditer(text, start, end):
                number = m.group().replace(" ", "").replace("-", "")
                if _CARD_PREFIX.match(number) and luhn.is_valid(number) and not _overlaps(*m.span(), taken):
                    taken.append(Finding("card", where, m.start(), m.end(), _mask_digits(m.group(), 4)))
        found += taken
        found += _phones(text, where, start, end, digits, taken, parsed)
    return found


def _phones(
    text: str,
    where: str,
    start: int,
    end: int,
    digits: int,
    taken: list[Finding],
    parsed: dict[str, phonenumbers.PhoneNumber | None],
) -> list[Finding]:
    if start > 0 and text[start - 1] in "+(":
        start -= 1
    before, after = text[start - 1 : start], text[end : end + 1]
    if (before.isascii() and before.isalnum()) or (after.isascii() and after.isalnum()):
        return []  # part of an identifier (v1.2.3456789, ABC12345678)
    candidate = text[start:end]
    if _DATE.fullmatch(candidate):
        return []
    if digits <= 15:
        if candidate not in parsed:
            parsed[candidate] = _phone_number(candidate, digits)
        number = parsed[candidate]
        if number is not None:
            if _overlaps(start, end, taken):
                return []
            region = phonenumbers.region_code_for_number(number)
            return [Finding("phone", where, start, end, _mask_digits(candidate, 4), region)]
        if " " not in candidate:
            return []
    # Several numbers in one run ("Room 3 010-1234-5678"): phonenumbers' matcher takes them apart.
    found: list[Finding] = []
    for region in _PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(candidate, region, leniency=phonenumbers.Leniency.VALID):
            s, e = start + match.start, start + match.end
            if _overlaps(s, e, taken) or _overlaps(s, e, found) or not _phone_shaped(match.raw_string):
                continue
            region_code = phonenumbers.region_code_for_number(match.number)
            found.append(Finding("phone", where, s, e, _mask_digits(match.raw_string, 4), region_code))
    return found


_PHONE_REGIONS = ("KR", "US")


def _phone_number(candidate: str, digits: int) -> phonenumbers.PhoneNumber | None:
    if not _phone_shaped(candidate):
        return None
    if candidate.startswith("+"):
        region = "ZZ"  # the number names its country
    elif digits > 11:
        return None  # longer than any Korean or US national number
    elif candidate.lstrip("(")[0] == "0" or digits == 8:
        region = "KR"  # Korean national numbers start with 0, or are 8-digit 1588-1234 service numbers
    else:
        region = "US"
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _phone_shaped(candidate: str) -> bool:
    # A digit run without separators or "+" is more often an order or account number than a phone;
    # only Korea's 010/011/016-019 mobile numbers are commonly written that way.
    if not candidate.isdigit():
        return True
    return len(candidate) in (10, 11) and candidate.startswith("01")


# --- secrets -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SecretRule:
    name: str
    prefixes: tuple[str, ...]  # every match starts with one of these (case-sensitive)
    pattern: re.Pattern[str]  # group 1 is the provider prefix shown in the masked value
    needs_digit: bool = False


# A key embedded in a longer token is not a key: every pattern checks the characters around it.
_B = r"(?<![A-Za-z0-9_\-])"
_E = r"(?![A-Za-z0-9_\-])"
_SECRETS = (
    # PEM first: a truncated block (no END line) is still a leaked key, so the END part is optional.
    _SecretRule(
        "private_key",
        ("-----BEGIN ",),
        re.compile(
            r"(-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----)"
            r"(?:[A-Za-z0-9+/=\s:,\-]{0,16000}?-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----)?"
        ),
    ),
    _SecretRule("anthropic_api_key", ("sk-ant-",), re.compile(_B + r"(sk-ant-)[A-Za-z0-9_\-]{20,300}" + _E)),
    _SecretRule(
        "openai_api_key",
        ("sk-",),
        re.compile(_B + r"(sk-(?:proj-|svcacct-|admin-)?)(?!ant-)[A-Za-z0-9_\-]{20,300}" + _E),
        needs_digit=True,
    ),
    _SecretRule(
        "stripe_secret_key", ("sk_", "rk_"), re.compile(_B + r"((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]{16,247}" + _E)
    ),
    _SecretRule("aws_access_key_id", ("AKIA", "ASIA"), re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    _SecretRule("github_token", ("gh",), re.compile(_B + r"(gh[pousr]_)[A-Za-z0-9]{36,251}" + _E)),
    _SecretRule("github_token", ("github_pat_",), re.compile(_B + r"(github_pat_)[A-Za-z0-9_]{22,255}" + _E)),
    _SecretRule("slack_token", ("xox",), re.compile(_B + r"(xox[abposr]-)[A-Za-z0-9\-]{10,250}" + _E)),
    _SecretRule("google_api_key", ("AIza",), re.compile(_B + r"(AIza)[0-9A-Za-z_\-]{35}" + _E)),
    _SecretRule(
        "jwt",
        ("eyJ",),
        re.compile(_B + r"(eyJ)[A-Za-z0-9_\-]{5,4000}\.eyJ[A-Za-z0-9_\-]{5,8000}\.[A-Za-z0-9_\-]{0,2000}" + _E),
    ),
)


def _secrets(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    for rule in _SECRETS:
        for prefix in rule.prefixes:
            at = text.find(prefix)
            while at != -1:
                m = rule.pattern.match(text, at)
                if m and not _overlaps(m.start(), m.end(), found):
                    value = m.group()
                    if not rule.needs_digit or any(c.isdigit() for c in value):
                        masked = m.group(1) + "…" + ("" if rule.name == "private_key" else value[-4:])
                        found.append(Finding("secret", where, m.start(), m.end(), masked, rule.name))
                at = text.find(prefix, at + 1)
    return found


# --- invisible Unicode ------------------------------------------------------------------------------

# Tag characters (U+E0000..E007F) spell hidden ASCII; zero-width characters, bidi embeddings /
# overrides / isolates and supplementary variation selectors hide or reorder text.
# Searched first for one BMP and one astral class: two such searches cost half of one mixed class.
_INVISIBLE_BMP = re.compile("[\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
_INVISIBLE_ASTRAL = re.compile("[\U000e0000-\U000e01ef]")
_INVISIBLE = re.compile(
    "[\U000e0000-\U000e007f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069\U000e0100-\U000e01ef]+"
)
_TAGS = frozenset(chr(c) for c in range(0xE0000, 0xE0080))
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Emoji sequences join with single ZWJs; hidden payloads need runs or many scattered characters.
_ZERO_WIDTH_RUN = 4
_ZERO_WIDTH_TOTAL = 16


def _invisible(text: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    quiet: list[re.Match[str]] = []
    for m in _INVISIBLE.finditer(text):
        run = m.group()
        tags = sum(c in _TAGS for c in run)
        if tags:
            found.append(Finding("unicode_tags", where, m.start(), m.end(), f"<{tags} tag characters>"))
        elif any(c in _BIDI for c in run) or len(run) >= _ZERO_WIDTH_RUN:
            found.append(_invisible_finding(m, where))
        else:
            quiet.append(m)
    if sum(len(m.group()) for m in quiet) >= _ZERO_WIDTH_TOTAL:
        found.extend(_invisible_finding(m, where) for m in quiet)
    return found


def _invisible_finding(m: re.Match[str], where: str) -> Finding:
    names = sorted({f"U+{ord(c):04X}" for c in m.group()})
    return Finding("invisible_chars", where, m.start(), m.end(), f"<{len(m.group())}: {' '.join(names[:4])}>")


# --- phrases -----------------------------------------------------------------------------------------

_HANGUL = re.compile("[\uac00-\ud7a3]")


@dataclass(frozen=True, slots=True)
class _Phrase:
    label: str
    needles: tuple[str, ...]  # lowercase; every match contains one, so the regex runs only when one is there
    pattern: re.Pattern[str]  # run on the lowercased text
    fallback: re.Pattern[str]  # case-insensitive, for the rare text whose lower() changes its length
    word: bool  # an English phrase must start at a word boundary


def _phrase(label: str, needles: tuple[str, ...], source: str) -> _Phrase:
    """`source` is lowercase; a space in it matches a little whitespace (or none in Korean, whose spacing
    varies). Matching the lowercased text with a case-sensitive pattern that starts with a literal
    lets the regex engine skip ahead to candidates: ten times faster than IGNORECASE or a leading \\b."""
    korean = bool(_HANGUL.search(source))
    spaced = source.replace(" ", r"\s{0,3}" if korean else r"\s{1,3}")
    return _Phrase(label, needles, re.compile(spaced), re.compile(spaced, re.IGNORECASE), not korean)


def _phrases(kind: str, text: str, lowered: str, where: str) -> list[Finding]:
    # Each distinct needle is looked for once (about 1 µs per needle on 2 KB), Korean ones only in
    # text that is not pure ASCII.
    rules, needles = _PHRASE_SETS[kind]
    ascii_only = text.isascii()
    present = {n for n in needles if not (ascii_only and not n.isascii()) and n in lowered}
    if not present:
        return []
    found: list[Finding] = []
    same_length = len(lowered) == len(text)
    for rule in rules:
        if present.isdisjoint(rule.needles):
            continue
        matches = rule.pattern.finditer(lowered) if same_length else rule.fallback.finditer(text)
        for m in matches:
            start, end = m.span()
            if rule.word and start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
                continue
            if not _overlaps(start, end, found):
                found.append(Finding(kind, where, start, end, rule.label, rule.label))
    return found


_PREVIOUS = r"(?:all |any )?(?:of )?(?:the |your |my )?(?:previous|prior|above|earlier|preceding|initial|original)"
_INSTRUCTIONS = r"(?:instructions?|prompts?|directions?|rules|guidelines|messages|context)"
_KO_PREVIOUS = r"(?:이전|위|앞|기존|지금까지)(?:의|에)? ?(?:모든 )?(?:받은 )?"
_KO_INSTRUCTIONS = r"(?:지시|지시사항|지침|명령|명령어|프롬프트|규칙)(?:을|를|은|는|들을|들은)?"
_KO_SYSTEM = r"시스템 ?(?:프롬프트|메시지|지시)"
_INJECTION = (
    _phrase("ignore previous instructions", ("ignore",), rf"ignore {_PREVIOUS} {_INSTRUCTIONS}"),
    _phrase(
        "ignore previous instructions",
        ("ignore",),
        rf"ignore (?:all |any )?(?:of )?(?:the |your )?{_INSTRUCTIONS} (?:above|before)",
    ),
    _phrase("disregard previous instructions", ("disregard",), rf"disregard {_PREVIOUS} {_INSTRUCTIONS}"),
    _phrase(
        "disregard the system prompt",
        ("system",),
        r"(?:disregard|ignore|forget|override) (?:the |your )?system (?:prompt|message|instructions?)",
    ),
    _phrase(
        "forget previous instructions",
        ("forget",),
        rf"forget (?:about )?(?:everything|{_PREVIOUS} {_INSTRUCTIONS}|(?:all )?your {_INSTRUCTIONS})",
    ),
    _phrase(
        "reveal the system prompt",
        ("system", "instructions"),
        r"(?:reveal|print|show|output|repeat|display|leak|tell me) (?:me )?(?:your|the) (?:full |entire |exact )?"
        r"(?:system prompt|initial instructions|hidden instructions|system message)",
    ),
    _phrase(
        "you are now DAN",
        ("dan", "unrestricted", "jailbroken"),
        r"you are now (?:dan\b|in dan mode|an? unrestricted|jailbroken)",
    ),
    _phrase("do anything now", ("anything",), r"do anything now\b"),
    _phrase(
        "developer mode",
        ("developer",),
        r"(?:enable|activate|enter) (?:the )?developer mode\b|developer mode (?:enabled|activated)\b",
    ),
    _phrase("jailbreak", ("jailbr",), r"jailbreak(?:en)? mode\b|act as (?:a )?jailbroken\b"),
    _phrase(
        "no restrictions",
        ("restrictions", "rules", "filters", "guidelines"),
        r"(?:pretend|act as if|imagine) (?:that )?you (?:have|had) no (?:restrictions|rules|filters|guidelines)",
    ),
    _phrase("ignore previous instructions", ("무시",), rf"{_KO_PREVIOUS}{_KO_INSTRUCTIONS} (?:모두 |전부 |다 )?무시"),
    _phrase("ignore previous instructions", ("무시",), r"모든 (?:지시|지시사항|지침|명령|규칙)(?:을|를)? 무시"),
    _phrase("disregard the system prompt", ("시스템",), rf"{_KO_SYSTEM}(?:을|를|는|은)? (?:무시|잊어)"),
    _phrase(
        "reveal the system prompt",
        ("시스템",),
        rf"{_KO_SYSTEM}(?:을|를|의 내용을)? (?:그대로 |전부 |모두 )?(?:출력|보여|알려|공개|말해|유출)",
    ),
    _phrase(
        "you are now DAN",
        ("너는", "당신은"),
        r"(?:너는|당신은) (?:이제|지금부터) (?:dan|제한이 없는|제약이 없는|탈옥)",
    ),
    _phrase("jailbreak", ("탈옥", "개발자"), r"탈옥 ?모드|개발자 ?모드(?:를|로)? ?(?:활성화|켜|전환)"),
    _phrase(
        "no restrictions",
        ("없이", "없는"),
        r"(?:제한|제약|필터)(?:이|은)? (?:없이|없는 것처럼) (?:대답|답변|응답|말해)",
    ),
)

_FINANCIAL = (
    _phrase(
        "guaranteed principal",
        ("원금",),
        r"원금 ?(?:이|을|은|를)? ?(?:100% ?)?(?:보장|보전|지켜 ?드|손실 ?(?:이 ?)?없)",
    ),
    _phrase(
        "guaranteed returns",
        ("보장", "확정"),
        r"(?:수익|수익률|이자|배당)(?:이|을|은|를)? ?(?:100% ?)?(?:보장|확정)",
    ),
    _phrase("guaranteed returns", ("확정", "보장", "무위험"), r"확정 ?수익|고수익 ?보장|무위험 ?(?:투자|수익)"),
    _phrase("sure to rise", ("무조건",), r"무조건 (?:오르|상승|올라|수익|돈을? ?번|돈 ?버)"),
    _phrase("no loss", ("손실", "손해"), r"(?:절대|결코) (?:손실|손해)(?:가|를|는)? ?(?:없|안 ?(?:봐|보|나))"),
    _phrase(
        "guaranteed returns",
        ("guarantee",),
        r"guaranteed? (?:\d+% )?(?:returns?|profits?|income|gains?|yields?)\b",
    ),
    _phrase(
        "guaranteed principal",
        ("principal", "capital"),
        r"(?:principal|capital)(?: is)? (?:fully |100% )?(?:guaranteed|protected)\b|"
        r"guaranteed? (?:principal|capital)\b",
    ),
    _phrase(
        "risk-free investment",
        ("risk",),
        r"(?:risk(?:-| )?free|no(?:-| )?risk|zero(?:-| )?risk) (?:investment|returns?|profits?|trade|trading)\b",
    ),
    _phrase("can't lose", ("lose",), r"you (?:can't|cannot|can not|won't) lose\b"),
    _phrase("double your money", ("double",), r"double your money\b"),
)

_APOS = "['\u2019]"
_REFUSAL = (
    _phrase(
        "cannot help",
        ("can", "won", "will", "able"),
        rf"i (?:can{_APOS}?t|cannot|can not|won{_APOS}t|will not|am unable to|{_APOS}m unable to|"
        rf"am not able to|{_APOS}m not able to) (?:help|assist|comply|provide|do that|fulfill|support)",
    ),
    _phrase(
        "cannot help",
        ("sorry",),
        rf"i{_APOS}m sorry,? but i (?:can{_APOS}?t|cannot|won{_APOS}t|am unable|{_APOS}m unable)",
    ),
    _phrase("cannot help", ("must",), r"i must (?:decline|refuse)\b"),
    _phrase(
        "cannot help",
        ("없", "어렵"),
        r"(?:도와|도움을 )(?:드릴|줄|드리기) 수 (?:없|어렵)|(?:도와|도움을 )드리기 어렵|"
        r"(?:요청|질문)(?:에|을|은|는)? (?:응할|답변할|답변해 드릴|처리할|들어 ?드릴) 수 없|"
        r"(?:제공|안내|답변)(?:해)? ?(?:드릴|할) 수 없습니다",
    ),
)

_PHRASE_SETS = {
    kind: (rules, frozenset(needle for rule in rules for needle in rule.needles))
    for kind, rules in (("prompt_injection", _INJECTION), ("financial_risk", _FINANCIAL), ("refusal", _REFUSAL))
}

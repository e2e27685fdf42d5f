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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import phonenumbers
from stdnum import luhn
from stdnum.kr import rrn

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


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: `start`/`end` are code-point offsets (end exclusive) into the `where` text."""

    kind: str
    where: str
    start: int
    end: int
    masked: str
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
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

    def masked(self) -> list[dict[str, Any]]:
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
    found: list[Finding] = []
    numbers = _rrns(text, where) + _cards(text, where)
    found += numbers
    found += _phones(text, where, numbers)
    found += _emails(text, where)
    found += _secrets(text, lowered, where)
    found += _invisible(text, where)
    found += _phrases(_FINANCIAL, text, lowered, where)
    if where == "request":
        found += _phrases(_INJECTION, text, lowered, where)
    else:
        found += _phrases(_REFUSAL, text, lowered, where)
    found.sort(key=lambda f: (f.start, f.end))
    return found


# --- PII -------------------------------------------------------------------------------------------

# A lookbehind anchors the local part at the start of its run, so a long run without "@" costs O(n).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}"
    r"(?![\w-])"
)


def _emails(text: str, where: str) -> list[Finding]:
    if "@" not in text:
        return []
    return [Finding("email", where, m.start(), m.end(), _mask_email(m.group())) for m in _EMAIL.finditer(text)]


def _mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[0]}***@{domain[0]}***.{domain.rsplit('.', 1)[-1]}"


def _mask_digits(value: str, keep: int) -> str:
    """Every digit but the last `keep` becomes '*'; separators stay, so the shape is recognisable."""
    total = sum(c.isdigit() for c in value)
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


# 13-19 digits written as one run, in groups of four (4242 4242 4242 4242) or as Amex's 4-6-5, with one
# kind of separator; a trailing "12/26" or a longer hyphenated id is not swallowed into the number.
_CARD = re.compile(r"(?<!\d)(?<!\d-)(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?!\d|-\d)")
# Major networks' leading digits (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay): a random
# digit run passes Luhn one time in ten, so the prefix keeps order and tracking numbers out.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[0478]|6")


def _cards(text: str, where: str) -> list[Finding]:
    found = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if _CARD_PREFIX.match(digits) and luhn.is_valid(digits):
            found.append(Finding("card", where, m.start(), m.end(), _mask_digits(m.group(), 4)))
    return found


# YYMMDD, an optional hyphen, then the century/gender digit and six more (971013-9019902).
_RRN = re.compile(r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]) ?-? ?\d{7}(?!\d)")


def _rrns(text: str, where: str) -> list[Finding]:
    return [
        Finding("kr_rrn", where, m.start(), m.end(), "******-*******")
        for m in _RRN.finditer(text)
        if rrn.is_valid(m.group().replace(" ", ""))
    ]


# Digits with phone punctuation, 8 or more of them: only such runs are handed to phonenumbers.
_PHONE_RUN = re.compile(r"(?<![A-Za-z0-9+])\+?\(?\d[\d ().\-]{6,60}\d(?![A-Za-z0-9])")
_PHONE_REGIONS = ("KR", "US")


def _phones(text: str, where: str, taken: list[Finding]) -> list[Finding]:
    found: list[Finding] = []
    for run in _PHONE_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) < 8:
            continue
        for region in _PHONE_REGIONS:
            for match in phonenumbers.PhoneNumberMatcher(run.group(), region, leniency=phonenumbers.Leniency.VALID):
                start, end = run.start() + match.start, run.start() + match.end
                if _overlaps(start, end, taken) or _overlaps(start, end, found):
                    continue
                if match.raw_string.isdigit() and not _bare_kr_mobile(match.raw_string):
                    continue
                region_code = phonenumbers.region_code_for_number(match.number)
                found.append(Finding("phone", where, start, end, _mask_digits(match.raw_string, 4), region_code))
    return found


def _bare_kr_mobile(digits: str) -> bool:
    # A digit run without separators or "+" is more often an order or account number than a phone;
    # only Korea's 010/011/016-019 mobile numbers are commonly written that way.
    return len(digits) in (10, 11) and digits.startswith("01")


def _overlaps(start: int, end: int, findings: list[Finding]) -> bool:
    return any(start < f.end and f.start < end for f in findings)


# --- secrets -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SecretRule:
    name: str
    needles: tuple[str, ...]  # lowercase substrings, one of which every match contains: the pre-filter
    pattern: re.Pattern[str]  # group 1 is the provider prefix shown in the masked value
    check: Callable[[str], bool] = lambda value: True


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


# Boundaries are written into each pattern so that a key embedded in a longer token is not split.
_B = r"(?<![A-Za-z0-9_\-])"
_E = r"(?![A-Za-z0-9_\-])"
_SECRETS = (
    _SecretRule("anthropic_api_key", ("sk-ant-",), re.compile(_B + r"(sk-ant-)[A-Za-z0-9_\-]{20,300}" + _E)),
    _SecretRule(
        "openai_api_key",
        ("sk-",),
        re.compile(_B + r"(sk-(?:proj-|svcacct-|admin-)?)(?!ant-)[A-Za-z0-9_\-]{20,300}" + _E),
        _has_digit,
    ),
    _SecretRule(
        "stripe_secret_key",
        ("_live_", "_test_"),
        re.compile(_B + r"((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]{16,247}" + _E),
    ),
    _SecretRule(
        "aws_access_key_id", ("akia", "asia"), re.compile(r"(?<![A-Z0-9])((?:AKIA|ASIA))[A-Z0-9]{16}(?![A-Z0-9])")
    ),
    _SecretRule("github_token", ("gh",), re.compile(_B + r"(gh[pousr]_)[A-Za-z0-9]{36,251}" + _E)),
    _SecretRule("github_token", ("github_pat_",), re.compile(_B + r"(github_pat_)[A-Za-z0-9_]{22,255}" + _E)),
    _SecretRule("slack_token", ("xox",), re.compile(_B + r"(xox[abposr]-)[A-Za-z0-9\-]{10,250}" + _E)),
    _SecretRule("google_api_key", ("aiza",), re.compile(_B + r"(AIza)[0-9A-Za-z_\-]{35}" + _E)),
    _SecretRule(
        "jwt",
        ("eyj",),
        re.compile(_B + r"(eyJ)[A-Za-z0-9_\-]{5,4000}\.eyJ[A-Za-z0-9_\-]{5,8000}\.[A-Za-z0-9_\-]{0,2000}" + _E),
    ),
)
# A truncated block (no END line) is still a leaked key: the END part is optional.
_PEM = re.compile(
    r"(-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----)"
    r"(?:[A-Za-z0-9+/=\s:,\-]{0,16000}?-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----)?"
)


def _secrets(text: str, lowered: str, where: str) -> list[Finding]:
    found: list[Finding] = []
    if "private key-----" in lowered:
        for m in _PEM.finditer(text):
            found.append(Finding("secret", where, m.start(), m.end(), m.group(1) + "…", "private_key"))
    for rule in _SECRETS:
        if not any(needle in lowered for needle in rule.needles):
            continue
        for m in rule.pattern.finditer(text):
            if rule.check(m.group()) and not _overlaps(m.start(), m.end(), found):
                masked = f"{m.group(1)}…{m.group()[-4:]}"
                found.append(Finding("secret", where, m.start(), m.end(), masked, rule.name))
    return found


# --- invisible Unicode ------------------------------------------------------------------------------

# Tag characters (U+E0000..E007F) spell hidden ASCII; zero-width characters, bidi embeddings /
# overrides / isolates and supplementary variation selectors hide or reorder text.
_INVISIBLE = re.compile(
    "[\U000e0000-\U000e007f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069\U000e0100-\U000e01ef]+"
)
_TAGS = frozenset(chr(c) for c in range(0xE0000, 0xE0080))
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Emoji sequences join with single ZWJs; hidden payloads need runs or many scattered characters.
_ZERO_WIDTH_RUN = 4
_ZERO_WIDTH_TOTAL = 16


def _invisible(text: str, where: str) -> list[Finding]:
    if text.isascii():
        return []
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
class _PhraseSet:
    kind: str
    needles: tuple[str, ...]  # lowercase substrings; the regex runs only when one is present
    labels: tuple[str, ...]
    pattern: re.Pattern[str]


def _phrase_set(kind: str, needles: tuple[str, ...], rules: tuple[tuple[str, str], ...]) -> _PhraseSet:
    """`rules` are (label, pattern): a space in a pattern matches any whitespace (or none in Korean,
    whose spacing varies), and matching ignores case, so "IGNORE  previous\ninstructions" matches."""
    parts = []
    for i, (_, source) in enumerate(rules):
        spaced = source.replace(" ", r"\s*" if _HANGUL.search(source) else r"\s+")
        parts.append(f"(?P<r{i}>{spaced})")
    pattern = re.compile("|".join(parts), re.IGNORECASE)
    return _PhraseSet(kind, needles, tuple(label for label, _ in rules), pattern)


def _phrases(phrases: _PhraseSet, text: str, lowered: str, where: str) -> list[Finding]:
    if not any(needle in lowered for needle in phrases.needles):
        return []
    return list(_phrase_matches(phrases, text, where))


def _phrase_matches(phrases: _PhraseSet, text: str, where: str) -> Iterator[Finding]:
    for m in phrases.pattern.finditer(text):
        label = phrases.labels[int((m.lastgroup or "r0")[1:])]
        yield Finding(phrases.kind, where, m.start(), m.end(), label, label)


_PREVIOUS = r"(?:all |any )?(?:of )?(?:the |your |my )?(?:previous|prior|above|earlier|preceding|initial|original)"
_INSTRUCTIONS = r"(?:instructions?|prompts?|directions?|rules|guidelines|messages|context)"
_KO_PREVIOUS = r"(?:이전|위|앞|기존|지금까지)(?:의|에)? ?(?:모든 )?(?:받은 )?"
_KO_INSTRUCTIONS = r"(?:지시|지시사항|지침|명령|명령어|프롬프트|규칙)(?:을|를|은|는|들을|들은)?"
_INJECTION = _phrase_set(
    "prompt_injection",
    (
        "ignore",
        "disregard",
        "forget",
        "system prompt",
        "you are now",
        "do anything now",
        "developer mode",
        "jailbreak",
        "override",
        "no restrictions",
        "무시",
        "시스템 프롬프트",
        "시스템프롬프트",
        "탈옥",
        "개발자 모드",
        "개발자모드",
        "제한",
    ),
    (
        ("ignore previous instructions", rf"\bignore {_PREVIOUS} {_INSTRUCTIONS}"),
        (
            "ignore previous instructions",
            rf"\bignore (?:all |any )?(?:of )?(?:the |your )?{_INSTRUCTIONS} (?:above|before)",
        ),
        ("disregard previous instructions", rf"\bdisregard {_PREVIOUS} {_INSTRUCTIONS}"),
        (
            "disregard the system prompt",
            r"\b(?:disregard|ignore|forget|override) (?:the |your )?system (?:prompt|message|instructions?)",
        ),
        (
            "forget previous instructions",
            rf"\bforget (?:about )?(?:everything|{_PREVIOUS} {_INSTRUCTIONS}|(?:all )?your {_INSTRUCTIONS})",
        ),
        (
            "reveal the system prompt",
            r"\b(?:reveal|print|show|output|repeat|display|leak|tell me) (?:me )?(?:your|the) (?:full |entire |exact )?"
            r"(?:system prompt|initial instructions|hidden instructions|system message)",
        ),
        ("you are now DAN", r"\byou are now (?:DAN|in DAN mode|an? unrestricted|jailbroken)"),
        ("do anything now", r"\bdo anything now\b"),
        (
            "developer mode",
            r"\b(?:enable|activate|enter) (?:the )?developer mode\b|\bdeveloper mode (?:enabled|activated)\b",
        ),
        ("jailbreak", r"\bjailbreak(?:en)? mode\b|\bact as (?:a )?jailbroken\b"),
        (
            "no restrictions",
            r"\b(?:pretend|act as if|imagine) (?:that )?you (?:have|had) no (?:restrictions|rules|filters|guidelines)",
        ),
        ("ignore previous instructions", rf"{_KO_PREVIOUS}{_KO_INSTRUCTIONS} (?:모두 |전부 |다 )?무시"),
        ("ignore previous instructions", r"모든 (?:지시|지시사항|지침|명령|규칙)(?:을|를)? 무시"),
        ("disregard the system prompt", r"시스템 ?(?:프롬프트|메시지|지시)(?:을|를|는|은)? (?:무시|잊어)"),
        (
            "reveal the system prompt",
            r"시스템 ?(?:프롬프트|메시지|지시)(?:을|를|의 내용을)? (?:그대로 |전부 |모두 )?"
            r"(?:출력|보여|알려|공개|말해|유출)",
        ),
        ("you are now DAN", r"(?:너는|당신은) (?:이제|지금부터) (?:DAN|제한이 없는|제약이 없는|탈옥)"),
        ("jailbreak", r"탈옥 ?모드|개발자 ?모드(?:를|로)? ?(?:활성화|켜|전환)"),
        ("no restrictions", r"(?:제한|제약|필터)(?:이|은)? (?:없이|없는 것처럼) (?:대답|답변|응답|말해)"),
    ),
)

_FINANCIAL = _phrase_set(
    "financial_risk",
    (
        "원금",
        "수익",
        "보장",
        "무조건",
        "손실",
        "손해",
        "guarantee",
        "risk-free",
        "risk free",
        "no risk",
        "can't lose",
        "cannot lose",
        "double your money",
    ),
    (
        ("guaranteed principal", r"원금 ?(?:이|을|은|를)? ?(?:100% ?)?(?:보장|보전|지켜 ?드|손실 ?(?:이 ?)?없)"),
        ("guaranteed returns", r"(?:수익|수익률|이자|배당|확정 ?수익)(?:이|을|은|를)? ?(?:100% ?)?(?:보장|확정)"),
        ("guaranteed returns", r"확정 ?수익|고수익 ?보장|무위험 ?(?:투자|수익)"),
        ("sure to rise", r"무조건 (?:오르|상승|올라|수익|돈을? ?번|돈 ?버)"),
        ("no loss", r"(?:절대|결코) (?:손실|손해)(?:가|를|는)? ?(?:없|안 ?(?:봐|보|나))"),
        ("guaranteed returns", r"\bguaranteed? (?:\d+% )?(?:returns?|profits?|income|gains?|yields?)\b"),
        (
            "guaranteed principal",
            r"\b(?:principal|capital)(?: is)? (?:fully |100% )?(?:guaranteed|protected)\b|"
            r"\bguaranteed? (?:principal|capital)\b",
        ),
        (
            "risk-free investment",
            r"\b(?:risk[- ]free|no[- ]risk|zero[- ]risk) (?:investment|returns?|profits?|trade|trading)\b",
        ),
        ("can't lose", r"\byou (?:can't|cannot|can not|won't) lose\b"),
        ("double your money", r"\bdouble your money\b"),
    ),
)

_APOS = "['\u2019]"
_REFUSAL = _phrase_set(
    "refusal",
    ("can", "unable", "not able", "won", "will not", "must", "수 없", "어렵"),
    (
        (
            "cannot help",
            rf"\bI (?:can{_APOS}?t|cannot|can not|won{_APOS}t|will not|am unable to|{_APOS}m unable to|"
            rf"am not able to|{_APOS}m not able to) (?:help|assist|comply|provide|do that|fulfill|support)",
        ),
        ("cannot help", rf"\bI{_APOS}m sorry,? but I (?:can{_APOS}?t|cannot|won{_APOS}t|am unable|{_APOS}m unable)"),
        ("cannot help", r"\bI must (?:decline|refuse)\b"),
        ("cannot help", r"\bas an AI(?: language model)?, I (?:can't|cannot|am not able)"),
        (
            "cannot help",
            r"(?:도와|도움을 )(?:드릴|줄|드리기) 수 (?:없|어렵)|(?:도와|도움을 )드리기 어렵|"
            r"(?:요청|질문)(?:에|을|은|는)? (?:응할|답변할|답변해 드릴|처리할|들어 ?드릴) 수 없|"
            r"(?:제공|안내|답변)(?:해)? ?(?:드릴|할) 수 없습니다",
        ),
    ),
)

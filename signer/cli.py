"""`signer`: keys and links from the command line, modelled on `aws s3 presign`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from signer import schemes
from signer.algorithms import Algorithm
from signer.errors import Reason, Rejected, SignerError
from signer.format import FORMAT_VERSION, METHODS, has_token, is_path_form, parse_link, path_form
from signer.keys import (
    AKAMAI_DIGESTS,
    DEFAULT_AKAMAI_WINDOW,
    DEFAULT_REGION,
    Keyring,
    LinkScheme,
    Status,
    cloudfront_key,
    new_key,
    secure_link_key,
)
from signer.params import COUNT_CODEC, FLAG_CODEC, METHOD_CODEC, PARAMS, TIME_CODEC, UPLOAD, Param
from signer.schemes import secure_link
from signer.schemes.secure_link import SECURE_LINK
from signer.schemes.sigv4_query import NAME as SIGV4_NAME
from signer.sign import DEFAULT_MAX_LIFETIME, content_disposition, sign_url
from signer.timeparse import describe, parse_time
from signer.verify import DEFAULT_SKEW, verify_url

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2

EPILOG = f"""\
examples:
  signer keygen --keyring keys.json --key-id k1 --alg ed25519
  signer sign https://media.example.com/videos/intro.mp4 --keyring keys.json --expires-in 3600
  signer sign https://media.example.com/hls/ep1/master.m3u8 --keyring keys.json \\
      --expires-in 7200 --prefix /hls/ep1/ --ip 203.0.113.0/24 --sub user-42
  signer sign https://media.example.com/uploads/u42/avatar.png --keyring keys.json \\
      --expires-in 600 --method PUT --content-type image/ --max-bytes 10485760 --one-time
  signer sign https://media.example.com/img/cat.jpg --keyring keys.json --expires-in 3600 \\
      --window 300                             # the same URL for five minutes: cacheable
  signer verify 'https://media.example.com/videos/intro.mp4?Expires=...' --keyring public.json
  signer keygen --keyring gateway-keyring.json --key-id GWLINKS01 --scheme sigv4   # S3 presign
  signer keygen --keyring gateway-keyring.json --key-id akamai-1 --scheme akamai \
      --key-file akamai-key.hex            # Akamai EdgeAuth: the backends' existing hex key
  signer verify 'https://media.example.com/videos/a.mp4' --keyring gateway-keyring.json \
      --header 'Cookie: hdnts=exp=...~acl=/videos/*~hmac=...'
  signer verify 'https://media.example.com/media/a.jpg?X-Amz-Algorithm=...' --keyring \
      gateway-keyring.json --method PUT --header 'Content-Type: image/jpeg'
  signer keygen --keyring gateway-keyring.json --key-id nginx-media --scheme secure_link \
      --expression -     # reads nginx's secure_link_md5 value from stdin (it holds the secret)
  signer keygen --keyring gateway-keyring.json --key-id K2JCJMDEHXQW5F --scheme cloudfront \
      --public-pem public_key.pem              # CloudFront signed URLs and cookies
  signer verify https://media.example.com/hls/ep1/seg001.ts --keyring gateway-keyring.json \
      --header 'Cookie: CloudFront-Policy=...; CloudFront-Signature=...; CloudFront-Key-Pair-Id=...'
  signer rotate --keyring keys.json            # new active key, old one kept as 'verify'
  signer export-public --keyring keys.json --output gateway-keyring.json
  signer retire --keyring keys.json k1

The keyring defaults to $SIGNER_KEYRING. Times are unix seconds or ISO 8601 with an offset
(2026-12-01T00:00:00Z). Exit status: 0 success, 1 link rejected (verify), 2 usage or keyring
error. Token format version {FORMAT_VERSION}: docs/token-format.md.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except SignerError as exc:
        print(f"signer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"signer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signer",
        description="Issue and check signed links for the edge gateway, and manage their keys.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[argparse.Namespace], int], helptext: str, epilog: str = ""
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=helptext,
            description=helptext,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--keyring",
            type=Path,
            default=os.environ.get("SIGNER_KEYRING"),
            required="SIGNER_KEYRING" not in os.environ,
            metavar="FILE",
            help="keyring file (default: $SIGNER_KEYRING)",
        )
        sub.set_defaults(run=run)
        return sub

    keygen = command(
        "keygen",
        _keygen,
        "add a new key to a keyring (created if missing)",
        "example:\n  signer keygen --keyring keys.json --key-id k1 --alg ed25519",
    )
    keygen.add_argument("--key-id", required=True, help="1-64 of A-Z a-z 0-9 . _ -")
    keygen.add_argument(
        "--alg",
        type=Algorithm,
        choices=list(Algorithm),
        default=Algorithm.ED25519,
        help="ed25519 (gateways hold only public keys; default) or hmac-sha256",
    )
    keygen.add_argument(
        "--status",
        type=Status,
        choices=[Status.ACTIVE, Status.VERIFY],
        help="default: active in an empty keyring, otherwise verify (stage the "
        "key on gateways first, then `signer activate`)",
    )
    keygen.add_argument(
        "--scheme",
        type=LinkScheme,
        choices=list(LinkScheme),
        help="a key for another system's links: sigv4 = S3 presigned URLs (the key id is the "
        "backend's access key id; HMAC, always 'verify'; docs/s3-presigned.md); secure_link = "
        "nginx secure_link MD5 links (docs/nginx-secure-link.md); akamai = Akamai EdgeAuth 2.0 "
        "tokens (docs/akamai.md); cloudfront = CloudFront signed URLs and cookies (the key id "
        "is the key-pair id; needs --public-pem; docs/cloudfront.md)",
    )
    keygen.add_argument("--region", help=f"sigv4: the credential scope region ({DEFAULT_REGION})")
    keygen.add_argument(
        "--public-pem",
        type=Path,
        metavar="FILE",
        help="cloudfront: the key pair's RSA public key (PEM, as CloudFront takes it); nothing "
        "is generated",
    )
    keygen.add_argument(
        "--expression",
        metavar="TEXT",
        help="secure_link: nginx's secure_link_md5 value, copied from its configuration "
        "(the text between the quotes); '-' reads it from the first line of stdin, which keeps "
        "the secret out of the shell history",
    )
    keygen.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="akamai: import the backends' existing hex key from FILE ('-': stdin) instead of "
        "making one",
    )
    keygen.add_argument(
        "--digest",
        choices=AKAMAI_DIGESTS,
        help="akamai: the token's HMAC, Akamai's 'algorithm' (default sha256)",
    )
    keygen.add_argument(
        "--escape-early",
        action="store_true",
        help="akamai: the backends sign with escape_early=True ('Escape token inputs')",
    )
    keygen.add_argument(
        "--window",
        type=int,
        metavar="SECONDS",
        help=f"akamai: the lifetime assumed for a token without st (default "
        f"{DEFAULT_AKAMAI_WINDOW})",
    )

    activate = command(
        "activate",
        _activate,
        "make a key the signing key (old one -> verify)",
        "example:\n  signer activate --keyring keys.json k2",
    )
    activate.add_argument("key_id", metavar="KEYID")

    rotate = command(
        "rotate",
        _rotate,
        "add a new active key; the old one stays as verify",
        "example:\n  signer rotate --keyring keys.json --key-id k-2026-12",
    )
    rotate.add_argument("--key-id", help="default: k-YYYYMMDD-HHMMSS")
    rotate.add_argument(
        "--alg",
        type=Algorithm,
        choices=list(Algorithm),
        help="default: the algorithm of the current active key",
    )

    retire = command(
        "retire",
        _retire,
        "refuse every link signed by a key from now on",
        "example:\n  signer retire --keyring keys.json k1",
    )
    retire.add_argument("key_id", metavar="KEYID")

    command("list", _list, "show the keys (ids, algorithms, statuses; never secrets)")

    export = command(
        "export-public",
        _export,
        "write the verification-only keyring a gateway needs",
        "Ed25519 keys lose their private half; retired keys lose all material. HMAC keys are\n"
        "shared secrets, so an export that contains one must go to a file (written 0600).\n\n"
        "example:\n  signer export-public --keyring keys.json --output gateway-keyring.json",
    )
    export.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write here (default: stdout, refused if the export holds a secret)",
    )

    sign = command("sign", _sign, "print a signed URL", EPILOG.split("\n\n")[0])
    sign.add_argument("url", metavar="URL", help="absolute URL or /path (query kept and signed)")
    when = sign.add_mutually_exclusive_group(required=True)
    when.add_argument("--expires-in", type=int, metavar="SECONDS", help="lifetime")
    when.add_argument("--expires-at", type=parse_time, metavar="TIME", help="absolute expiry")
    for param in PARAMS:
        if param.keyword is not None:
            sign.add_argument(f"--{param.keyword.replace('_', '-')}", **_flag(param))
    sign.add_argument(
        "--download-as",
        metavar="NAME",
        help="answer as a download saved under NAME (instead of --response-content-disposition)",
    )
    sign.add_argument(
        "--path-form",
        action="store_true",
        help="put the token in a leading path segment (with --prefix: for HLS/DASH players)",
    )
    sign.add_argument(
        "--max-lifetime",
        type=int,
        default=DEFAULT_MAX_LIFETIME,
        metavar="SECONDS",
        help="refuse longer lifetimes (default: 7 days)",
    )
    sign.add_argument(
        "--window",
        type=int,
        metavar="SECONDS",
        help="round Issued/Expires so that one URL serves a whole window (cacheable); "
        "the link lives up to one window longer",
    )

    check = command(
        "verify",
        _verify,
        "explain whether the gateway would accept a signed URL",
        'example:\n  signer verify "$URL" --keyring gateway-keyring.json --client-ip 203.0.113.7',
    )
    check.add_argument("url", metavar="URL")
    check.add_argument("--method", default="GET", help="request method (default GET)")
    check.add_argument("--client-ip", type=ipaddress.ip_address, help="address of the client")
    check.add_argument("--at", type=parse_time, metavar="TIME", help="judge at this time")
    check.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header the request sends (S3 presigned URLs sign some, e.g. Content-Type)",
    )
    check.add_argument(
        "--skew",
        type=int,
        default=DEFAULT_SKEW,
        metavar="SECONDS",
        help=f"clock skew allowance (default {DEFAULT_SKEW})",
    )
    check.add_argument(
        "--max-lifetime",
        type=int,
        default=DEFAULT_MAX_LIFETIME,
        metavar="SECONDS",
        help="longest Expires - Issued accepted (default: 7 days, the gateway's default)",
    )
    return parser


def _flag(param: Param) -> dict[str, Any]:
    """The `signer sign` flag of a binding, from its row of the parameter table."""
    options: dict[str, Any] = {"help": param.summary}
    if param.methods == UPLOAD:
        options["help"] = f"PUT: {param.summary}"
    codec = param.codec
    assert param.keyword is not None
    if codec is FLAG_CODEC:
        options["action"] = "store_true"
        return options
    options["metavar"] = param.keyword.rpartition("_")[2].upper()
    if codec is TIME_CODEC:
        options.update(type=parse_time, metavar="TIME")
    elif codec is COUNT_CODEC:
        options["type"] = int
    elif codec is METHOD_CODEC:
        options.update(choices=list(METHODS), metavar=None)
    if param.cli_type is not None:
        options["type"] = param.cli_type
    return options


def _load(path: Path, *, create: bool = False) -> Keyring:
    if create and not path.exists():
        return Keyring()
    return Keyring.load(path)


def _keygen(args: argparse.Namespace) -> int:
    keyring = _load(args.keyring, create=True)
    if args.scheme is not None:
        return _keygen_scheme(args, keyring)
    status = args.status or (Status.VERIFY if keyring.active else Status.ACTIVE)
    key = new_key(args.key_id, args.alg, status)
    keyring.with_key(key).save(args.keyring)
    print(f"added {key.alg} key {key.id!r} as {status} to {args.keyring}")
    if status is Status.VERIFY:
        print(
            f"next: deploy `signer export-public` to the gateways, then "
            f"`signer activate --keyring {args.keyring} {key.id}`"
        )
    return EXIT_OK


def _keygen_scheme(args: argparse.Namespace, keyring: Keyring) -> int:
    """A link-signing key for another system's links: the backends sign, the gateways verify."""
    if args.status is Status.ACTIVE:
        raise SignerError(f"a {args.scheme} key is never active: backends sign with it")
    if (args.scheme is LinkScheme.CLOUDFRONT) != (args.public_pem is not None):
        raise SignerError("--public-pem goes with --scheme cloudfront, and it needs one")
    if args.scheme is LinkScheme.CLOUDFRONT:
        if args.region is not None:
            raise SignerError("--region is a sigv4 key's; a cloudfront key has none")
        key = cloudfront_key(args.key_id, _public_der(args.public_pem))
        keyring.with_key(key).save(args.keyring)
        print(f"added cloudfront key {key.id!r} (RSA public key) to {args.keyring}")
        print(
            f"backends sign with the key pair's private key and Key-Pair-Id={key.id!r} "
            "(docs/cloudfront.md)"
        )
        return EXIT_OK
    if args.scheme is LinkScheme.SECURE_LINK:
        return _keygen_secure_link(args, keyring)
    if args.expression is not None:
        raise SignerError("--expression belongs to a secure_link key")
    if args.scheme is LinkScheme.AKAMAI:
        return _keygen_akamai(args, keyring)
    if args.key_file or args.digest or args.escape_early or args.window is not None:
        raise SignerError("--key-file, --digest, --escape-early and --window are for akamai keys")
    key = new_key(
        args.key_id, Algorithm.HMAC_SHA256, Status.VERIFY, scheme=args.scheme, region=args.region
    )
    keyring.with_key(key).save(args.keyring)
    print(f"added {key.scheme} key {key.id!r} to {args.keyring}")
    print(
        f"backends sign with aws_access_key_id={key.id!r} and, as aws_secret_access_key, the "
        f"key's 'secret' text in {args.keyring} (docs/s3-presigned.md)"
    )
    return EXIT_OK


def _keygen_secure_link(args: argparse.Namespace, keyring: Keyring) -> int:
    """nginx's existing secret, imported with its expression: nothing is generated."""
    if args.region is not None:
        raise SignerError("--region belongs to a sigv4 key")
    if args.expression is None:
        raise SignerError("a secure_link key needs --expression (nginx's secure_link_md5 value)")
    text = sys.stdin.readline().rstrip("\r\n") if args.expression == "-" else args.expression
    key = secure_link_key(args.key_id, text)
    keyring.with_key(key).save(args.keyring)
    print(f"added secure_link key {key.id!r} to {args.keyring}: the gateways verify nginx's")
    print("secure_link links with it once they load the file (docs/nginx-secure-link.md)")
    return EXIT_OK


def _keygen_akamai(args: argparse.Namespace, keyring: Keyring) -> int:
    """An Akamai key: made here, or the backends' existing one imported (read from a file, never
    from the command line, which shell histories and process lists keep)."""
    secret = None
    if args.key_file is not None:
        text = sys.stdin.read() if str(args.key_file) == "-" else args.key_file.read_text()
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            raise SignerError("--key-file: not an even number of hex digits") from None
    key = new_key(
        args.key_id,
        Algorithm.HMAC_SHA256,
        Status.VERIFY,
        scheme=LinkScheme.AKAMAI,
        digest=args.digest,
        escape_early=args.escape_early,
        window=args.window,
        secret=secret,
    )
    keyring.with_key(key).save(args.keyring)
    print(f"added akamai key {key.id!r} ({key.digest}) to {args.keyring}")
    print(
        f"backends sign with EdgeAuth(key=<the key's 'key' text in {args.keyring}>, "
        f"algorithm={key.digest!r}, escape_early={key.escape_early}) (docs/akamai.md)"
    )
    return EXIT_OK


def _public_der(path: Path) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM public key file (what CloudFront is given)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SignerError(f"--public-pem {path}: cannot read ({exc.strerror})") from None
    try:
        public = load_pem_public_key(pem)
    except ValueError:
        raise SignerError(f"--public-pem {path}: not a PEM public key") from None
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _activate(args: argparse.Namespace) -> int:
    keyring = _load(args.keyring)
    previous = keyring.active
    keyring.activated(args.key_id).save(args.keyring)
    demoted = f"; {previous.id!r} is now verify" if previous and previous.id != args.key_id else ""
    print(f"{args.key_id!r} is now the active key{demoted}")
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    keyring = _load(args.keyring)
    previous = keyring.active
    alg = args.alg or (
        previous.alg if previous and isinstance(previous.alg, Algorithm) else Algorithm.ED25519
    )
    key_id = args.key_id or datetime.now(UTC).strftime("k-%Y%m%d-%H%M%S")
    key = new_key(key_id, alg, Status.ACTIVE)
    keyring.with_key(key).save(args.keyring)
    kept = f"; {previous.id!r} kept as verify until its links expire" if previous else ""
    print(f"new active {alg} key {key_id!r}{kept}")
    return EXIT_OK


def _retire(args: argparse.Namespace) -> int:
    _load(args.keyring).retired(args.key_id).save(args.keyring)
    print(f"{args.key_id!r} is retired: links signed with it are refused after the next reload")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    keyring = _load(args.keyring)
    for key in keyring:
        material = "private" if key.secret is not None else "public" if key.public else "none"
        created = datetime.fromtimestamp(key.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        alg = key.to_json().get("alg", "md5")  # as the file says it (nginx's has none: MD5)
        print(f"{key.id}\t{alg}\t{key.status}\tcreated {created}\tmaterial: {material}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    public = _load(args.keyring).public_export()
    if args.output is None:
        if public.has_secrets:
            raise SignerError("the export holds HMAC secrets; write it to a file with --output")
        sys.stdout.write(public.dumps(public_only=True))
        return EXIT_OK
    public.save(args.output, public_only=True)
    note = " (holds HMAC secrets: mode 0600)" if public.has_secrets else ""
    print(f"wrote {len(public)} keys to {args.output}{note}")
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    now = time.time()
    bindings = {p.keyword: getattr(args, p.keyword) for p in PARAMS if p.keyword is not None}
    if args.download_as is not None:
        if bindings["response_content_disposition"] is not None:
            raise SignerError("give --download-as or --response-content-disposition, not both")
        bindings["response_content_disposition"] = content_disposition(args.download_as)
    url = sign_url(
        args.url,
        _load(args.keyring),
        expires_in=args.expires_in,
        expires_at=args.expires_at,
        now=now,
        max_lifetime=args.max_lifetime,
        window=args.window,
        **bindings,
    )
    if args.path_form:
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, "", "", "")) + path_form(
            f"{parts.path}?{parts.query}"
        )
    print(url)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    keyring = _load(args.keyring)
    now = time.time() if args.at is None else float(args.at)
    parts = urlsplit(args.url)
    try:
        scheme = schemes.detect(parts.path or "/", parts.query)
    except schemes.Ambiguous as exc:
        print(f"rejected: ambiguous_link: {exc}")
        return EXIT_REJECTED
    if scheme is None and not is_path_form(parts.path) and not has_token(parts.query):
        carried = schemes.carried_by(_header_lookup(args))
        scheme = carried[0] if len(carried) == 1 else None
        if len(carried) > 1:
            names = ", ".join(other.name for other in carried)
            print(f"rejected: ambiguous_link: the headers carry links of {names}; give one")
            return EXIT_REJECTED
    if scheme is not None:
        return _verify_scheme(scheme, args, keyring, now)
    try:
        verified = verify_url(
            args.url,
            keyring,
            method=args.method.upper(),
            client_ip=args.client_ip,
            now=now,
            skew=args.skew,
            max_lifetime=args.max_lifetime,
        )
    except Rejected as exc:
        print(f"rejected: {exc.reason.value}: {exc.detail}")
        if exc.reason is Reason.BAD_SIGNATURE:
            _explain_signature(args.url)
        return EXIT_REJECTED
    claims = verified.claims
    print(f"valid: key {claims.key_id!r}, path {verified.path!r}")
    print(f"  issued  {describe(claims.issued, now)}")
    print(f"  expires {describe(claims.expires, now)}")
    for param in PARAMS:
        value = getattr(claims, param.field)
        if param.required or value is param.codec.absent:
            continue
        if param.codec is TIME_CODEC:
            value = describe(value, now)
        elif param.codec is FLAG_CODEC:
            value = "yes"
        print(f"  {param.field.replace('_', ' '):12} {value}")
    if claims.has_limits:
        print(
            "  usage limits are counted by the gateways together (refusals too_many_streams,"
            " uses_exhausted, bytes_exhausted); `gateway limits show` gives what is used"
        )
    if claims.subject_streams:
        print(
            f"  MaxStreams {claims.max_streams} counts the streams of every link of subject"
            f" {claims.sub!r} together, not of this link alone"
        )
    print(f"  token id {verified.token_id} (identifies this link for revocation)")
    return EXIT_OK


def _verify_scheme(
    scheme: schemes.Scheme, args: argparse.Namespace, keyring: Keyring, now: float
) -> int:
    """Another scheme's link: its verdict, and on a bad signature what was signed."""
    parts = urlsplit(args.url)
    request = schemes.LinkRequest(
        args.method.upper(),
        parts.path or "/",
        parts.query,
        host=_host(parts),
        header=_header_lookup(args),
        client_ip=args.client_ip,
        max_lifetime=args.max_lifetime,
    )
    try:
        link = scheme.verify(keyring, request, now=now, skew=args.skew)
    except Rejected as exc:
        print(f"rejected ({scheme.name}): {exc.reason.value}: {exc.detail}")
        if scheme is SECURE_LINK:
            _explain_secure_link(keyring, request, exc)
        elif exc.reason in (Reason.BAD_SIGNATURE, Reason.WRONG_METHOD):
            for line in scheme.explain(request):
                print(f"  {line}")
            if scheme.name == SIGV4_NAME:
                print("  check that the backend signed for this host, method and headers, with")
                print("  the same key; the signature covers the string to sign, whose last line")
                print("  is the SHA-256 of the canonical request")
        return EXIT_REJECTED
    claims, verified = link.verified.claims, link.verified
    where = f"path {verified.path!r}"
    if link.bucket is not None:
        where = f"bucket {link.bucket!r}, {where}"
    print(f"valid ({scheme.name}): key {claims.key_id!r}, {where}")
    issued = describe(claims.issued, now)
    if link.issued_from is not None:  # the one rule: `signer.schemes.base.unstated_issue`
        issued = f"not stated; counted as {issued} (the expiry minus {link.issued_from})"
    print(f"  issued  {issued}")
    nginx = " (nginx: valid through the second before)" if scheme is SECURE_LINK else ""
    print(f"  expires {describe(claims.expires, now)}{nginx}")
    if claims.ip is not None and scheme is SECURE_LINK:
        print(f"  ip           {claims.ip} (the expression hashes $remote_addr)")
    for label, value in (
        ("starts", None if claims.starts is None else describe(claims.starts, now)),
        ("prefix", claims.prefix),
        ("ip", None if scheme is SECURE_LINK else claims.ip),
        ("method", claims.method),
        ("sub", claims.sub),
        ("type", claims.response_content_type),
        ("disposition", claims.response_content_disposition),
    ):
        if value is not None:
            print(f"  {label:12} {value}")
    print(f"  token id {verified.token_id} (identifies this link for revocation)")
    if link.bucket is not None:
        print("  a gateway also requires the bucket to be its origin's (docs/s3-presigned.md)")
    return EXIT_OK


def _explain_secure_link(keyring: Keyring, request: schemes.LinkRequest, exc: Rejected) -> None:
    """What nginx read from the link and, on a bad hash, what each key hashed (masked)."""
    try:
        lines = secure_link.explain(request)
    except Rejected:
        return  # the detail said which part cannot be read
    if exc.reason is Reason.BAD_SIGNATURE:
        lines += secure_link.explain_keys(keyring, request)
        lines += [
            "check that the backend hashed this string with the same secret (the * stand for",
            "the expression's literal text), then base64url-encoded the MD5 without padding",
        ]
    for line in lines:
        print(f"  {line}")


def _header_lookup(args: argparse.Namespace) -> Callable[[str], list[str]]:
    """`--header 'Name: value'` lines as a scheme reads request headers (any case)."""
    headers: dict[str, list[str]] = {}
    for line in args.header:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SignerError(f"--header {line!r}: give it as 'Name: value'")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lambda name: headers.get(name.lower(), [])


def _host(parts: SplitResult) -> str | None:
    """The Host a client sends for this URL: lower case, without the scheme's default port."""
    if parts.hostname is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _explain_signature(url: str) -> None:
    """Show the string-to-sign, as S3 does for SignatureDoesNotMatch; it holds no secret."""
    parts = urlsplit(url)
    signed = parse_link(parts.path or "/", parts.query).signed
    print("  the string-to-sign was (between the lines):")
    print("  ---")
    for line in signed.decode("ascii").split("\n"):
        print(f"  {line}")
    print("  ---")
    print("  check that your signer used the same key and produced these exact bytes")


if __name__ == "__main__":
    raise SystemExit(main())

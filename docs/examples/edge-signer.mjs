// A signer for the edge gateway's signed links, token format 1.2 (docs/token-format.md), in
// JavaScript with nothing but Node's built-in `crypto` and `fs`: an ES module for Node.
// Written from the format document and checked against every signer vector in docs/vectors/
// (docs/examples/check-vectors.mjs); the project's tests run both.
//
//   import { loadKeyring, signUrl, pathForm } from "./edge-signer.mjs";
//   const keyring = loadKeyring("keys.json");
//   const url = signUrl("https://media.example.com/videos/intro.mp4", keyring,
//                       { expiresIn: 3600, sub: "user-42", ip: "203.0.113.0/24" });
//
// Or from a shell, with the flags of `signer sign`:
//   node edge-signer.mjs sign https://media.example.com/hls/ep1/master.m3u8 \
//       --keyring keys.json --expires-in 3600 --prefix /hls/ep1/ --path-form

import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export const FORMAT_VERSION = "1.4.0";
export const DEFAULT_MAX_LIFETIME = 7 * 24 * 3600;
const LABEL = "EDGE-TOKEN-V1";
const MAX_TIME = 10 ** 12 - 1;
const MAX_BYTES = 2n ** 63n - 1n;
const METHODS = ["GET", "HEAD", "PUT"];
const READ = ["GET", "HEAD"];
const UPLOAD = ["PUT"];

export class SigningError extends Error {}
export class KeyringError extends Error {}

function refuse(message) {
  throw new SigningError(message);
}

// --- §3: canonical percent-encoding, base64url ------------------------------------------------

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const PATH_SAFE = /^[A-Za-z0-9\-._~/:@]$/;
const ATTR_CHAR = /^[A-Za-z0-9!#$&+\-.^_`|~]$/; // RFC 8187, for filename*
const LONE_SURROGATE = /\p{Cs}/u; // with the u flag only unpaired surrogates match
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/; // Unicode Cc: C0, DEL and C1

function percentEncode(text, safe) {
  if (LONE_SURROGATE.test(text)) refuse("the text is not valid Unicode (a lone surrogate)");
  let out = "";
  for (const byte of new TextEncoder().encode(text)) {
    const char = String.fromCharCode(byte);
    out += byte < 0x80 && safe.test(char) ? char : "%" + hex2(byte);
  }
  return out;
}

function hex2(byte) {
  return byte.toString(16).toUpperCase().padStart(2, "0");
}

/** UTF-8, upper-case hex, every byte escaped but A-Z a-z 0-9 - . _ ~ / : @ (§3). */
export function canonical(text) {
  return percentEncode(text, PATH_SAFE);
}

function b64url(bytes) {
  return Buffer.from(bytes).toString("base64url"); // RFC 4648 §5, no padding
}

function b64urlDecode(text, what) {
  const bytes = Buffer.from(text, "base64url");
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1 || b64url(bytes) !== text) {
    throw new KeyringError(`${what} must be base64url without padding`);
  }
  return bytes;
}

/** Percent-decode once, as a URL's path is read: each run of %XX as UTF-8, anything else as it
 * is (a lone '%' stays a '%'). */
function percentDecode(raw) {
  return raw.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = Uint8Array.from(run.slice(1).split("%"), (h) => parseInt(h, 16));
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return refuse("the URL path is not valid UTF-8 once percent-decoded");
    }
  });
}

// --- §4, §5: paths and prefixes -----------------------------------------------------------

function checkPath(path, what = "the path") {
  if (typeof path !== "string" || !path.startsWith("/") || path === "/") {
    refuse(`${what} must start with '/' and name an object`);
  }
  for (const segment of path.slice(1).split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      refuse(`${what} has an empty, '.' or '..' segment`);
    }
  }
  if (path.includes("\u0000")) refuse(`${what} contains NUL`);
}

function checkPrefix(prefix) {
  if (prefix === "/") return;
  if (!prefix.endsWith("/")) refuse("Prefix must end with '/'");
  checkPath(prefix.slice(0, -1), "Prefix");
}

// --- §2: value rules ----------------------------------------------------------------------

function checkSub(sub) {
  const codePoints = [...sub].length; // code points, not UTF-16 units
  if (codePoints < 1 || codePoints > 256 || CONTROL.test(sub)) {
    refuse("Sub must be 1-256 code points without control characters");
  }
}

const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const HEADER_PARAM = ` *; *${TCHAR}+=(?:${TCHAR}+|"[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*")`;
const RESPONSE_TYPE = new RegExp(`^${TCHAR}+/${TCHAR}+(?:${HEADER_PARAM})*$`);
const DISPOSITION = new RegExp(`^${TCHAR}+(?:${HEADER_PARAM})*$`);
const RESTRICTED_NAME = "[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"; // RFC 6838 §4.2, lower case
const UPLOAD_TYPE = new RegExp(`^${RESTRICTED_NAME}/(?:${RESTRICTED_NAME})?$`);

function headerRule(name, pattern) {
  return (value) => {
    if (value.length > 512 || !pattern.test(value)) refuse(`${name} is not a valid header value`);
  };
}

function checkUploadType(value) {
  if (!UPLOAD_TYPE.test(value)) refuse("ContentType must be a lower-case type/subtype or type/");
}

// --- IP bindings: RFC 5952 text, IPv4-mapped written as IPv4, no zone id ------------------

function parseIPv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = parts.map((p) => (/^(0|[1-9][0-9]{0,2})$/.test(p) ? Number(p) : 256));
  return bytes.every((b) => b <= 255) ? bytes : null;
}

function parseIPv6(text) {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const words = (part) => {
    if (part === "") return [];
    const groups = part.split(":");
    const out = [];
    for (const [i, group] of groups.entries()) {
      if (i === groups.length - 1 && group.includes(".")) {
        const v4 = parseIPv4(group);
        if (v4 === null) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(group)) {
        out.push(parseInt(group, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1 && head.length !== 8) return null;
  if (halves.length === 2 && head.length + tail.length > 7) return null;
  const all = [...head, ...Array(8 - head.length - tail.length).fill(0), ...tail];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

function ipv6Text(bytes) {
  const words = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1;
  let bestLength = 1; // a single zero field is never compressed
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i]; // the first of equal runs
    i = j;
  }
  const hexes = words.map((w) => w.toString(16));
  if (bestStart < 0) return hexes.join(":");
  return `${hexes.slice(0, bestStart).join(":")}::${hexes.slice(bestStart + bestLength).join(":")}`;
}

/** The canonical binding text for an address or network in a usual spelling. */
export function ipBinding(text) {
  if (typeof text !== "string") refuse("ip must be a string");
  if (text.includes("%")) refuse(`ip ${text}: a zone id cannot be bound`);
  const [address, length, ...extra] = text.split("/");
  if (extra.length) refuse(`ip ${text}: not an address or a network`);
  let bytes = parseIPv4(address);
  const v4 = bytes !== null;
  if (!v4) bytes = parseIPv6(address);
  if (bytes === null) refuse(`ip ${text}: not an address or a network`);
  const max = bytes.length * 8;
  if (length !== undefined && !/^[0-9]{1,3}$/.test(length)) refuse(`ip ${text}: bad prefix`);
  let prefix = length === undefined ? max : Number(length);
  if (prefix > max) refuse(`ip ${text}: bad prefix length`);
  for (let bit = prefix; bit < max; bit++) {
    if (bytes[bit >> 3] & (0x80 >> (bit & 7))) refuse(`ip ${text}: has host bits set`);
  }
  const mapped = !v4 && prefix >= 96 && bytes.slice(0, 10).every((b) => b === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) {
    bytes = bytes.slice(12); // ::ffff:a.b.c.d is how a dual-stack socket shows an IPv4 client
    prefix -= 96;
  }
  const written = bytes.length === 4 ? bytes.join(".") : ipv6Text(bytes);
  return prefix === bytes.length * 8 ? written : `${written}/${prefix}`;
}

// --- the parameter table: one row per parameter, in the only order they may appear --------

const TIME = {
  value(v, name) {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_TIME) refuse(`${name} is out of range`);
    return v;
  },
  encode: String,
  fromText: Number,
};
const COUNT = {
  value(v, name) {
    let n;
    try {
      n = BigInt(v);
    } catch {
      refuse(`${name} must be an integer`);
    }
    if (typeof v === "number" && !Number.isSafeInteger(v)) refuse(`${name} must be an integer`);
    if (n < 0n || n > MAX_BYTES) refuse(`${name} is out of range`);
    return n;
  },
  encode: (n) => n.toString(),
  fromText: BigInt,
};
const STRING = {
  value(v, name) {
    if (typeof v !== "string") refuse(`${name} must be a string`);
    return v;
  },
  encode: (v) => v,
  fromText: (t) => t,
};
const TEXT = { ...STRING, encode: canonical };
const IP = { ...STRING, value: (v) => ipBinding(v) };
const METHOD = { ...STRING, value: (v, name) => STRING.value(v, name).toUpperCase() };
const FLAG = { value: () => true, encode: () => "1", fromText: (t) => t === "1" };

function positive(name) {
  return (v) => v >= 1n || refuse(`${name}: a usage limit must be at least 1`);
}

function oneOf(values, name) {
  return (v) => values.includes(v) || refuse(`${name} must be one of ${values.join(", ")}`);
}

export const PARAMS = Object.freeze([
  { name: "Expires", codec: TIME, required: true },
  { name: "KeyID", codec: STRING, required: true },
  { name: "Issued", codec: TIME, required: true },
  { name: "Starts", option: "startsAt", codec: TIME },
  { name: "IP", option: "ip", codec: IP },
  { name: "Prefix", option: "prefix", codec: TEXT, rule: checkPrefix },
  { name: "Method", option: "method", codec: METHOD, rule: oneOf(METHODS, "Method") },
  { name: "Sub", option: "sub", codec: TEXT, rule: checkSub },
  { name: "ResponseContentType", option: "responseContentType", codec: TEXT, methods: READ,
    rule: headerRule("ResponseContentType", RESPONSE_TYPE) },
  { name: "ResponseContentDisposition", option: "responseContentDisposition", codec: TEXT,
    methods: READ, rule: headerRule("ResponseContentDisposition", DISPOSITION) },
  { name: "ContentType", option: "contentType", codec: TEXT, methods: UPLOAD,
    rule: checkUploadType },
  { name: "MinBytes", option: "minBytes", codec: COUNT, methods: UPLOAD },
  { name: "MaxBytes", option: "maxBytes", codec: COUNT, methods: UPLOAD },
  { name: "NoOverwrite", option: "noOverwrite", codec: FLAG, methods: UPLOAD },
  { name: "OneTime", option: "oneTime", codec: FLAG, methods: UPLOAD },
  { name: "MaxStreams", option: "maxStreams", codec: COUNT, methods: READ, limit: true, rule: positive("MaxStreams") },
  { name: "MaxUses", option: "maxUses", codec: COUNT, methods: READ, limit: true, rule: positive("MaxUses") },
  { name: "MaxServed", option: "maxServed", codec: COUNT, methods: READ, limit: true, rule: positive("MaxServed") },
  { name: "Rate", option: "rate", codec: COUNT, methods: READ, limit: true, rule: positive("Rate") },
  { name: "SubjectStreams", option: "subjectStreams", codec: FLAG, methods: READ, limit: true },
]);
const TOKEN_NAMES = new Set([...PARAMS.map((p) => p.name), "Signature"].map(asciiLower));
const OTHER_OPTIONS = ["expiresIn", "expiresAt", "now", "maxLifetime", "window", "query"];
const OPTIONS = new Set([...PARAMS.filter((p) => p.option).map((p) => p.option), ...OTHER_OPTIONS]);

function asciiLower(text) {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase()); // A-Z only: every language agrees
}

// --- §4: application parameters -----------------------------------------------------------

const QUERY = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/; // RFC 3986 query

/** Whether a query parameter is named like a token parameter: its name, %XX decoded, A-Z
 * folded to a-z (and nothing else), is one of the token parameter names (§4). */
export function resemblesTokenParameter(part) {
  const name = part.split("=")[0].replace(/%([0-9A-Fa-f]{2})/g, (_, h) =>
    String.fromCharCode(parseInt(h, 16)),
  );
  return TOKEN_NAMES.has(asciiLower(name));
}

function checkAppQuery(query) {
  if (!QUERY.test(query)) refuse("the query has characters outside RFC 3986 (or a lone '%')");
  for (const part of query.split("&")) {
    if (part === "") refuse("the query has an empty parameter");
    if (resemblesTokenParameter(part)) refuse(`${part.split("=")[0]} resembles a token parameter`);
  }
}

// --- signing ------------------------------------------------------------------------------

/** [Issued, Expires] for a link signed at `now` (unix seconds). With `window`, Issued is rounded
 * down to a multiple of it and `expiresIn` counts from the window's end: one URL per window. */
export function signingTimes(now, { expiresIn, expiresAt, window, maxLifetime } = {}) {
  if ((expiresIn === undefined || expiresIn === null) === (expiresAt === undefined || expiresAt === null)) {
    refuse("give exactly one of expiresIn and expiresAt");
  }
  if (!Number.isFinite(now) || now < 0) refuse("now must be unix seconds");
  let issued = Math.floor(now);
  let slack = 0;
  if (window !== undefined && window !== null) {
    if (!Number.isSafeInteger(window) || window <= 0) {
      refuse("the window must be a positive number of seconds");
    }
    issued = Math.floor(issued / window) * window;
    slack = window;
  }
  const expires = expiresIn != null ? issued + slack + expiresIn : expiresAt;
  if (!Number.isSafeInteger(expires)) refuse("the expiry must be whole unix seconds");
  const lifetime = expires - issued;
  const bound = maxLifetime ?? DEFAULT_MAX_LIFETIME;
  if (lifetime <= 0) refuse("the lifetime must be positive (the link would be born expired)");
  if (lifetime > bound) refuse(`the lifetime ${lifetime}s exceeds the maximum ${bound}s`);
  return [issued, expires];
}

/** The exact bytes a signature covers (§4). */
export function stringToSign(rawPath, signedQuery, prefixed) {
  return Buffer.from(`${LABEL}\n${prefixed ? "" : rawPath}\n${signedQuery}`, "ascii");
}

function signBytes(key, data) {
  if (!key.secret) refuse(`key ${key.id} has no private material`);
  if (key.alg === "hmac-sha256") return createHmac("sha256", key.secret).update(data).digest();
  return cryptoSign(null, data, ed25519Private(key.secret));
}

/**
 * Sign a decoded object path (`/videos/a b.mp4`): returns the request target to append to the
 * gateway's origin. `keyOrKeyring` is a keyring (its active key signs) or one of its keys.
 * Options: expiresIn | expiresAt, startsAt, ip, prefix, method, sub, responseContentType,
 * responseContentDisposition, contentType, minBytes, maxBytes, noOverwrite, oneTime, maxStreams,
 * maxUses, maxServed, rate, subjectStreams, and
 * query (application parameters, already percent-encoded), now, maxLifetime, window.
 */
export function signPath(path, keyOrKeyring, options = {}) {
  for (const name of Object.keys(options)) {
    if (!OPTIONS.has(name)) throw new TypeError(`unknown signing option: ${name}`);
  }
  const key = keyOrKeyring.signingKey ? keyOrKeyring.signingKey() : keyOrKeyring;
  const [issued, expires] = signingTimes(options.now ?? Date.now() / 1000, options);
  checkPath(path);
  const values = new Map([["Expires", expires], ["KeyID", key.id], ["Issued", issued]]);
  for (const param of PARAMS) {
    const given = param.option ? options[param.option] : values.get(param.name);
    if (given === undefined || given === null || (param.codec === FLAG && given !== true)) continue;
    const value = param.codec.value(given, param.name);
    param.rule?.(value);
    values.set(param.name, value);
  }
  const method = values.get("Method") ?? "GET";
  for (const param of PARAMS) {
    if (param.methods && values.has(param.name) && !param.methods.includes(method)) {
      refuse(param.methods === UPLOAD ? `${param.name}: upload constraints need Method=PUT`
        : param.limit ? `${param.name}: usage limits need a reading Method (GET or HEAD)`
        : `${param.name}: response overrides need a reading Method (GET or HEAD)`);
    }
  }
  if (values.has("Starts") && values.get("Starts") >= expires) refuse("Starts must be before Expires");
  if (values.has("MinBytes") && values.has("MaxBytes") && values.get("MinBytes") > values.get("MaxBytes")) {
    refuse("MinBytes must not exceed MaxBytes");
  }
  if (values.has("SubjectStreams") && !(values.has("MaxStreams") && values.has("Sub"))) {
    refuse("SubjectStreams needs MaxStreams and Sub");
  }
  const prefix = values.get("Prefix");
  if (prefix !== undefined && !path.startsWith(prefix)) refuse("the path is not under the prefix");
  const app = options.query ?? "";
  if (app) checkAppQuery(app);
  const block = PARAMS.filter((p) => values.has(p.name))
    .map((p) => `${p.name}=${p.codec.encode(values.get(p.name))}`)
    .join("&");
  const query = app ? `${app}&${block}` : block;
  const rawPath = canonical(path);
  const signature = signBytes(key, stringToSign(rawPath, query, prefix !== undefined));
  return `${rawPath}?${query}&Signature=${b64url(signature)}`;
}

/** Sign an absolute URL or a bare path; its path is percent-decoded once, its query kept. */
export function signUrl(url, keyring, options = {}) {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*)?([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(url);
  if (match === null) refuse("not a URL");
  const [, origin = "", path, query = "", fragment] = match;
  if (fragment) refuse("the URL must not have a #fragment");
  return origin + signPath(percentDecode(path), keyring, { ...options, query });
}

/** Move a signed query-form target into the path form (§9). */
export function pathForm(target) {
  const at = target.indexOf("?");
  return `/token=${b64url(Buffer.from(target.slice(at + 1), "ascii"))}${target.slice(0, at)}`;
}

/** The token id of a signed target (§7): for revocation. */
export function tokenId(target) {
  const signature = Buffer.from(target.slice(target.lastIndexOf("&Signature=") + 11), "base64url");
  return createHash("sha256").update(signature).digest("hex").slice(0, 32);
}

/** A Content-Disposition value naming any file (§10), byte for byte what every signer writes. */
export function contentDisposition(filename, { inline = false } = {}) {
  if (typeof filename !== "string" || !filename || /[/\\]/.test(filename) ||
      CONTROL.test(filename) || LONE_SURROGATE.test(filename)) {
    refuse("the file name must be non-empty, without '/', '\\' or controls");
  }
  const kind = inline ? "inline" : "attachment";
  let fallback = "";
  for (const c of filename) fallback += c >= " " && c <= "~" && c !== '"' && c !== "%" ? c : "_";
  if (fallback === filename) return `${kind}; filename="${filename}"`;
  return `${kind}; filename="${fallback}"; filename*=UTF-8''${percentEncode(filename, ATTR_CHAR)}`;
}

// --- the keyring file (docs/keyring.md) ----------------------------------------------------

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

function ed25519Private(seed) {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" });
}

function ed25519Public(seed) {
  return createPublicKey(ed25519Private(seed)).export({ format: "der", type: "spki" }).subarray(-32);
}

function parseKey(entry, where) {
  const fail = (message) => {
    throw new KeyringError(`${where}: ${message}`);
  };
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) fail("must be an object");
  const { id, alg, status } = entry;
  if (typeof id !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(id)) fail("'id' must be 1-64 of A-Z a-z 0-9 . _ -");
  where = `${where} (id ${id})`;
  if (alg !== "hmac-sha256" && alg !== "ed25519") fail("'alg' must be hmac-sha256 or ed25519");
  if (!["active", "verify", "retired"].includes(status)) fail("'status' must be active, verify or retired");
  const created = entry.created === undefined ? 0 : entry.created;
  if (!Number.isSafeInteger(created) || created < 0) fail("'created' must be unix seconds");
  if (entry.comment !== undefined && entry.comment !== null && typeof entry.comment !== "string") {
    fail("'comment' must be a string");
  }
  const allowed = ["id", "alg", "status", "created", "comment",
    ...(alg === "hmac-sha256" ? ["secret"] : ["private", "public"])];
  const unknown = Object.keys(entry).filter((k) => !allowed.includes(k));
  if (unknown.length) fail(`unknown field(s) ${unknown.sort().join(", ")} for ${alg}`);
  const material = (name) => {
    const value = entry[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== "string") fail(`'${name}' must be a base64url string`);
    try {
      return b64urlDecode(value, name);
    } catch {
      return fail(`'${name}' must be base64url without padding`);
    }
  };
  let secret = material(alg === "hmac-sha256" ? "secret" : "private");
  let publicKey = material("public");
  if (alg === "hmac-sha256") {
    if (secret !== null && secret.length < 32) fail("'secret' must be at least 32 bytes");
    if (secret === null && status !== "retired") fail("an HMAC key that is not retired needs 'secret'");
  } else {
    for (const [name, value] of [["private", secret], ["public", publicKey]]) {
      if (value !== null && value.length !== 32) fail(`'${name}' must be 32 bytes`);
    }
    if (secret !== null) {
      const derived = ed25519Public(secret);
      if (publicKey !== null && !publicKey.equals(derived)) fail("'public' does not match 'private'");
      publicKey = derived;
    }
    if (publicKey === null && status !== "retired") fail("an Ed25519 key that is not retired needs 'public'");
  }
  return Object.freeze({ id, alg, status, created, secret, public: publicKey });
}

/** Read a keyring document (JSON text), with every rule of docs/keyring.md. */
export function parseKeyring(text, source = "keyring") {
  let document;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new KeyringError(`${source}: not valid JSON (${error.message})`);
  }
  if (typeof document !== "object" || document === null || document.format !== "edge-keyring/1") {
    throw new KeyringError(`${source}: 'format' must be 'edge-keyring/1'`);
  }
  if (!Array.isArray(document.keys)) throw new KeyringError(`${source}: 'keys' must be a list`);
  const keys = document.keys.map((entry, i) => parseKey(entry, `${source}: keys[${i}]`));
  const byId = new Map();
  for (const key of keys) {
    if (byId.has(key.id)) throw new KeyringError(`${source}: key id ${key.id} appears twice`);
    byId.set(key.id, key);
  }
  const active = keys.filter((k) => k.status === "active");
  if (active.length > 1) throw new KeyringError(`${source}: more than one active key`);
  return Object.freeze({
    keys,
    active: active[0] ?? null,
    get: (id) => byId.get(id) ?? null,
    signingKey() {
      if (!this.active) throw new KeyringError(`${source}: the keyring has no active key`);
      if (!this.active.secret) throw new KeyringError(`${source}: the active key has no private material`);
      return this.active;
    },
  });
}

export function loadKeyring(path) {
  return parseKeyring(readFileSync(path, "utf8"), `keyring ${path}`);
}

// --- command line: node edge-signer.mjs sign URL --keyring FILE --expires-in N [...] ------

function camel(flag) {
  return flag.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
}

function main(argv) {
  const [command, url, ...rest] = argv;
  if (command !== "sign" || !url) {
    console.error("usage: node edge-signer.mjs sign URL --keyring FILE (--expires-in S | --expires-at T)\n" +
      "       [--starts-at T] [--ip IP] [--prefix P] [--method M] [--sub S]\n" +
      "       [--response-content-type V] [--response-content-disposition V | --download-as NAME]\n" +
      "       [--content-type T] [--min-bytes N] [--max-bytes N] [--no-overwrite] [--one-time]\n" +
      "       [--window S] [--max-lifetime S] [--path-form]");
    return 2;
  }
  const options = {};
  let keyringPath = process.env.SIGNER_KEYRING;
  let downloadAs;
  let asPathForm = false;
  const numbers = { expiresIn: Number, expiresAt: Number, window: Number, maxLifetime: Number };
  const byOption = new Map(PARAMS.filter((p) => p.option).map((p) => [p.option, p]));
  for (let i = 0; i < rest.length; i++) {
    const name = camel(rest[i].replace(/^--/, ""));
    if (name === "pathForm") {
      asPathForm = true;
      continue;
    }
    const param = byOption.get(name);
    if (param?.codec === FLAG) {
      options[name] = true;
      continue;
    }
    const value = rest[++i];
    if (value === undefined) throw new SigningError(`${rest[i - 1]} needs a value`);
    if (name === "keyring") keyringPath = value;
    else if (name === "downloadAs") downloadAs = value;
    else if (name in numbers) options[name] = numbers[name](value);
    else if (param) options[name] = param.codec.fromText(name === "prefix" ? percentDecode(value) : value);
    else throw new SigningError(`unknown flag ${rest[i - 1]}`);
  }
  if (!keyringPath) throw new SigningError("--keyring is required (or set SIGNER_KEYRING)");
  if (downloadAs !== undefined) options.responseContentDisposition = contentDisposition(downloadAs);
  let signed = signUrl(url, loadKeyring(keyringPath), options);
  if (asPathForm) {
    const origin = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(signed)?.[0] ?? "";
    signed = origin + pathForm(signed.slice(origin.length));
  }
  console.log(signed);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof SigningError || error instanceof KeyringError)) throw error;
    console.error(`edge-signer: error: ${error.message}`);
    process.exitCode = 2;
  }
}

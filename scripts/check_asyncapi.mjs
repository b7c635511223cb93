#!/usr/bin/env node
// Checks docs/asyncapi.yaml with the official AsyncAPI parser
// (@asyncapi/parser, a devDependency of the root package.json):
//
//   npm install --no-audit --no-fund && node scripts/check_asyncapi.mjs
//
// 1. Every JSON Schema of docs/schema compiles under draft 2020-12 (Ajv),
//    with `$id` = https://tickergate.example/schema/v1/<path> and only
//    relative `$ref`s, which resolve between the files: nothing is fetched.
// 2. The parser parses docs/asyncapi.yaml, resolving its `./schema/...`
//    `$ref`s from the files. The payloads are declared
//    `application/schema+json;version=2020-12`, which the parser does not
//    know by itself: this script registers a schema parser for it that
//    compiles each payload with Ajv's 2020-12 validator (for an AsyncAPI 3
//    document the parser calls its `parse`, not its `validate`).
// 3. Every message example validates against its message's payload.
//
// Prints every diagnostic; exits 1 on any of error severity (or on a
// schema that does not compile, or an example that does not validate),
// 0 otherwise. Warnings and hints are printed and do not fail.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';
import { Ajv2020 } from 'ajv/dist/2020.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const specPath = join(root, 'docs', 'asyncapi.yaml');
const schemaDir = join(root, 'docs', 'schema');
const BASE = 'https://tickergate.example/schema/v1/';
const FORMATS = [
  'application/schema+json;version=2020-12',
  'application/schema+yaml;version=2020-12',
];

let failures = 0;
const fail = (msg) => {
  failures += 1;
  console.log(`error: ${msg}`);
};

function newAjv() {
  // Strict, except for `required` names that another branch defines
  // (`then: {required: ["symbol"]}`, `anyOf: [{required: ["bid"]}, ...]`).
  return new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
}

// 1. The schema files.
function schemaFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return schemaFiles(path);
    return name.endsWith('.json') ? [path] : [];
  });
}

function refsOf(value, out = []) {
  if (Array.isArray(value)) value.forEach((v) => refsOf(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refsOf(v, out);
    }
  }
  return out;
}

const files = schemaFiles(schemaDir).sort();
const schemas = new Map();
for (const path of files) {
  const rel = relative(schemaDir, path).split(sep).join('/');
  let doc;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    fail(`docs/schema/${rel}: not JSON: ${e.message}`);
    continue;
  }
  if (doc.$id !== BASE + rel) fail(`docs/schema/${rel}: $id is ${doc.$id}, not ${BASE + rel}`);
  for (const ref of refsOf(doc)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(ref)) fail(`docs/schema/${rel}: $ref ${ref} is not relative`);
  }
  schemas.set(rel, doc);
}
const ajv = newAjv();
for (const doc of schemas.values()) ajv.addSchema(doc);
let compiled = 0;
for (const [rel, doc] of schemas) {
  try {
    ajv.getSchema(doc.$id);
    compiled += 1;
  } catch (e) {
    fail(`docs/schema/${rel} does not compile: ${e.message}`);
  }
}
console.log(`${compiled} of ${schemas.size} JSON Schemas in docs/schema compile (draft 2020-12)`);

// 2. The AsyncAPI document.
const parser = new Parser();
let validated = 0;
// The payload as resolved by the parser (the files' contents, inlined):
// an error message, or null when it compiles.
function compileError(data) {
  try {
    newAjv().compile(stripIds(data));
    return null;
  } catch (e) {
    return `not a valid JSON Schema 2020-12: ${e.message}`;
  }
}
parser.registerSchemaParser({
  getMimeTypes: () => FORMATS,
  async validate(input) {
    const message = compileError(input.data);
    return message ? [{ message, path: input.path }] : [];
  },
  async parse(input) {
    validated += 1;
    const message = compileError(input.data);
    if (message) fail(`docs/asyncapi.yaml at ${input.path.join('.')}: ${message}`);
    return input.data;
  },
});

// Inlined files keep their `$id` and `$schema`; once inlined, every `$ref`
// is resolved, and the ids would only clash (one file inlined twice). The
// parser also marks schemas with `x-parser-*` keys of its own.
function stripIds(value) {
  if (Array.isArray(value)) return value.map(stripIds);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (k !== '$id' && k !== '$schema' && !k.startsWith('x-parser-')) out[k] = stripIds(v);
    }
    return out;
  }
  return value;
}

const { document, diagnostics } = await fromFile(parser, specPath).parse();
const severities = { [DiagnosticSeverity.Error]: 'error', [DiagnosticSeverity.Warning]: 'warning', [DiagnosticSeverity.Information]: 'info', [DiagnosticSeverity.Hint]: 'hint' };
for (const d of diagnostics) {
  const where = d.path && d.path.length ? ` at ${d.path.join('.')}` : '';
  const line = d.range ? `:${d.range.start.line + 1}` : '';
  console.log(`${severities[d.severity] ?? d.severity}: docs/asyncapi.yaml${line}${where}: ${d.message} [${d.code}]`);
  if (d.severity === DiagnosticSeverity.Error) failures += 1;
}
if (!document) {
  fail('docs/asyncapi.yaml did not parse');
} else {
  // 3. Examples against their payloads.
  let examples = 0;
  for (const message of document.allMessages()) {
    const payload = message.payload();
    if (!payload) continue;
    // A Multi Format Schema Object: the schema is under `schema`.
    const json = payload.json();
    const schema = typeof json.schemaFormat === 'string' ? json.schema : json;
    let validate;
    try {
      validate = newAjv().compile(stripIds(schema));
    } catch (e) {
      fail(`message ${message.id()}: payload does not compile: ${e.message}`);
      continue;
    }
    for (const ex of message.examples()) {
      examples += 1;
      if (!validate(ex.payload())) {
        fail(`message ${message.id()}, example ${ex.name()}: ${ajv.errorsText(validate.errors)}`);
      }
    }
  }
  const counts = ['channels', 'operations', 'messages'].map((k) => `${document[k]().length} ${k}`);
  if (validated === 0) fail('the 2020-12 schema parser was never called: payloads were not checked');
  console.log(`docs/asyncapi.yaml: AsyncAPI ${document.version()}, ${counts.join(', ')}; ${validated} payloads checked as JSON Schema 2020-12; ${examples} examples checked`);
}
console.log(failures ? `FAILED: ${failures} error(s)` : 'ok');
process.exit(failures ? 1 : 0);

// The official Cohere npm client (`cohere-ai`, CohereClient: POST {BASE_URL}/v1/rerank) against
// tideserve's Cohere-style rerank endpoint: what a user of the Cohere SDK sees. Run from
// tests/clients, where node_modules lives:
//
//   echo '{"query": "q", "documents": ["a", "b"], "top_n": null, "return_documents": true}' |
//     node rerank_client.mjs BASE_URL API_KEY MODEL
//
// BASE_URL is the server's root; a trailing /v1 is dropped (the SDK adds /v1/rerank itself).
// An empty API_KEY sends no Authorization header. Prints one JSON line and exits 0:
//   {"results": [{"index", "relevance_score", "document": str|null}], "raw": <the SDK's object>,
//    "http": {"url", "status"}}
// or, when the SDK throws one of its errors (an HTTP error status, a timeout, a refused
// connection, a request it will not serialize):
//   {"error": {"status": <HTTP status or null>, "message": str, "body": <error body or null>}}
// The SDK itself reads a 2xx body leniently (missing required keys pass silently, wrong types only
// warn), so a 2xx body is also checked here against the SDK's own RerankResponse schema, strictly
// but allowing unknown keys as the SDK does; a body that fails it is a failure (exit 1).
// Exits 1 when something else fails (the package is missing, the response is not the SDK's
// schema), 2 on bad usage or a stdin that is not the request JSON.
import path from 'node:path';

import {loadClientPackage} from './client_packages.mjs';

const [baseArg, apiKey, model] = process.argv.slice(2);
if (!baseArg || apiKey === undefined || !model) {
  console.error('usage: node rerank_client.mjs BASE_URL API_KEY MODEL < request.json');
  process.exit(2);
}
const baseUrl = baseArg.replace(/\/+$/, '').replace(/\/v1$/, '');

const {sdk, schemas} = loadClientPackage('cohere-ai', (req) => ({
  sdk: req('cohere-ai'),
  // The SDK's wire schemas; not in its "exports", so loaded by file path.
  schemas: req(path.join(process.cwd(), 'node_modules', 'cohere-ai', 'serialization', 'index.js')),
}));
const {CohereClient, CohereError, CohereTimeoutError} = sdk;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function statusOf(e) {
  return Number.isInteger(e.statusCode) ? e.statusCode : null;
}

async function main() {
  let req;
  try {
    req = JSON.parse(await readStdin());
  } catch (e) {
    console.error(`stdin is not JSON: ${e.message}`);
    process.exit(2);
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    console.error('stdin must be a JSON object {"query", "documents", "top_n", "return_documents"}');
    process.exit(2);
  }

  // Only the key given here: not CO_API_KEY from the environment. The SDK insists on a token, so
  // with an empty key it gets a placeholder and the header is dropped on the way out.
  delete process.env.CO_API_KEY;
  let wire = null;  // what went over HTTP: the URL, the status and the body's text
  async function recordingFetch(url, init) {
    if (apiKey === '' && init?.headers) {
      const headers = new Headers(init.headers);
      headers.delete('authorization');
      init = {...init, headers};
    }
    const response = await fetch(url, init);
    wire = {url: String(url), status: response.status, text: await response.clone().text()};
    return response;
  }
  const client = new CohereClient({
    baseUrl,
    token: apiKey === '' ? 'unused' : apiKey,
    maxRetries: 0,
    timeoutInSeconds: 120,
    fetch: recordingFetch,
  });

  const request = {model, query: req.query, documents: req.documents};
  if (req.top_n !== undefined && req.top_n !== null) request.topN = req.top_n;
  if (req.return_documents !== undefined && req.return_documents !== null) {
    request.returnDocuments = req.return_documents;
  }

  let raw;
  try {
    raw = await client.rerank(request);
  } catch (e) {
    if (e instanceof CohereError || e instanceof CohereTimeoutError ||
        e?.constructor?.name === 'JsonError') {
      const body = e.body === undefined ? null : e.body;
      console.log(JSON.stringify({error: {status: statusOf(e), message: String(e.message), body}}));
      return;
    }
    throw e;
  }

  let body;
  try {
    body = JSON.parse(wire.text);
  } catch (e) {
    throw new Error(`HTTP ${wire.status} body is not JSON: ${JSON.stringify(wire.text)}`);
  }
  const strict = schemas.RerankResponse.parse(body, {
    unrecognizedObjectKeys: 'passthrough',
    allowUnrecognizedUnionMembers: true,
    allowUnrecognizedEnumValues: true,
    breadcrumbsPrefix: ['response'],
  });
  if (!strict.ok) {
    const why = strict.errors.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ');
    throw new Error(`the response is not the SDK's RerankResponse (${why}): ${wire.text}`);
  }
  const results = raw.results.map((r) => ({
    index: r.index,
    relevance_score: r.relevanceScore,
    document: r.document?.text ?? null,
  }));
  console.log(JSON.stringify({results, raw, http: {url: wire.url, status: wire.status}}));
}

main().catch((e) => {
  console.error('rerank client: FAILED');
  console.error(e);
  process.exit(1);
});

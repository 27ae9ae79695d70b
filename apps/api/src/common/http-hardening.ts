import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { ApiConfig } from '@vmkeep/config';

type Next = (err?: unknown) => void;
type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i;

/** Writes a JSON error in the API's error shape (used before Nest's exception filter is reachable). */
export function sendJsonError(res: ServerResponse, statusCode: number, error: string, message: string): void {
  const json = JSON.stringify({ statusCode, error, message });
  res.statusCode = statusCode;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(json));
  res.end(json);
}

/**
 * Headers on every response: no MIME sniffing, no framing, no referrer, no caching (responses carry tokens and
 * inventory), and a Content-Security-Policy that allows nothing — except on the OpenAPI pages, whose UI needs
 * its own scripts and styles.
 */
export function securityHeaders(docsPrefix: string): Middleware {
  return (req, res, next) => {
    res.removeHeader('X-Powered-By');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Cache-Control', 'no-store');
    if (!(req.url ?? '').startsWith(docsPrefix)) {
      res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    }
    next();
  };
}

/** A request that carries a body (a Content-Length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Writes with a body must declare JSON (application/json or application/*+json); anything else → 415. */
export const requireJsonWrites: Middleware = (req, res, next) => {
  if (!WRITE_METHODS.has(req.method ?? '') || !hasBody(req)) return next();
  const type = req.headers['content-type'] ?? '';
  if (JSON_TYPE.test(type)) return next();
  sendJsonError(res, 415, 'Unsupported Media Type', 'request bodies must be JSON (Content-Type: application/json)');
};

/** Turns errors of the body parser (too large, malformed JSON, bad charset) into the API's JSON error shape. */
function bodyParserErrors(err: unknown, _req: IncomingMessage, res: ServerResponse, next: Next): void {
  const e = err as { status?: unknown; type?: unknown; limit?: unknown } | undefined;
  if (!e || typeof e.status !== 'number' || typeof e.type !== 'string') return next(err);
  if (e.type === 'entity.too.large') {
    sendJsonError(res, 413, 'Payload Too Large', `request body exceeds the limit of ${String(e.limit)} bytes`);
  } else if (e.type === 'entity.parse.failed') {
    sendJsonError(res, 400, 'Bad Request', 'request body is not valid JSON');
  } else {
    sendJsonError(res, e.status >= 400 && e.status < 500 ? e.status : 400, 'Bad Request', `unreadable request body (${e.type})`);
  }
}

/**
 * The HTTP hardening of the API: security headers, no framework fingerprint, CORS only for the configured
 * origins, JSON-only writes and a body size limit. Must run before the app initialises (it registers the JSON
 * body parser itself, so Nest's default parser is not added).
 */
export function hardenHttp(app: NestExpressApplication, api: Pick<ApiConfig, 'bodyLimitBytes' | 'corsOrigins'>, docsPrefix: string): void {
  app.disable('x-powered-by');
  app.use(securityHeaders(docsPrefix));
  if (api.corsOrigins.length > 0) {
    app.enableCors({
      origin: api.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Range'],
      exposedHeaders: ['Content-Range', 'Content-Disposition', 'Retry-After'],
      maxAge: 600,
    });
  }
  app.use(requireJsonWrites);
  app.useBodyParser('json', { limit: api.bodyLimitBytes });
  app.useBodyParser('urlencoded', { limit: api.bodyLimitBytes, extended: false });
  app.use(bodyParserErrors);
}

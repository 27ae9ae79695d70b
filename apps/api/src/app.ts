import { INestApplication, RequestMethod, ValidationPipe } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { APP_CONFIG, AppConfig } from '@vmkeep/config';
import { hardenHttp } from './common/http-hardening';
import { UuidParamsPipe } from './common/uuid-params.pipe';

export const API_PREFIX = 'api';

/**
 * Everything about the HTTP surface that is not a module: HTTP hardening (security headers, CORS allow-list,
 * JSON-only writes, body size limit; see common/http-hardening.ts), the /api prefix, input validation (id route
 * parameters must be UUIDs; unknown fields and wrong types → 400 naming the field) and the OpenAPI document at
 * /api/docs (JSON at /api/docs-json). Shared by main.ts and the tests; call it before the app initialises.
 */
export function configureApp(app: INestApplication): void {
  hardenHttp(app as NestExpressApplication, app.get<AppConfig>(APP_CONFIG).api, `/${API_PREFIX}/docs`);
  // GET /metrics stays at the root, where Prometheus scrapes by default.
  app.setGlobalPrefix(API_PREFIX, { exclude: [{ path: 'metrics', method: RequestMethod.GET }] });
  app.useGlobalPipes(
    new UuidParamsPipe(),
    new ValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      transformOptions: { enableImplicitConversion: false },
    }),
  );
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('VMKeep API')
      .setDescription('Backups of VMware virtual machines. Authenticate with POST /api/auth/login, then send Authorization: Bearer <token>.')
      .setVersion('0.1.0')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup(`${API_PREFIX}/docs`, app, document, { jsonDocumentUrl: `${API_PREFIX}/docs-json` });
}

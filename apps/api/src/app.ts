import { INestApplication, ValidationPipe } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';

export const API_PREFIX = 'api';

/**
 * Everything about the HTTP surface that is not a module: the /api prefix, input validation (unknown fields and
 * wrong types → 400 naming the field) and the OpenAPI document at /api/docs (JSON at /api/docs-json).
 * Shared by main.ts and the tests.
 */
export function configureApp(app: INestApplication): void {
  app.setGlobalPrefix(API_PREFIX);
  app.useGlobalPipes(
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

import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { APP_CONFIG, AppConfig, appLogger, loadConfig } from '@vmkeep/config';
import { redactSecrets } from '@vmkeep/persistence';
import { AppModule } from './app.module';
import { configureApp } from './app';

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: appLogger(loadConfig(), redactSecrets) });
  configureApp(app);
  app.enableShutdownHooks();
  const config = app.get<AppConfig>(APP_CONFIG);
  await app.listen(config.api.port, config.api.host);
  Logger.log(`VMKeep API listening on ${await app.getUrl()} (OpenAPI at /api/docs)`, 'Main');
}

bootstrap().catch((err: unknown) => {
  // Configuration and start-up errors carry no secrets (see ConfigError, SecretError).
  console.error(`vmkeep-api: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

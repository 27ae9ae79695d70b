// Test helper: the API as a Nest application inside the jest process (no dist/, no worker) on 127.0.0.1 and a free
// port, with users of every role.
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { hashPassword, UserEntity } from '@vmkeep/persistence';
import { configureApp } from '../../apps/api/src/app';
import { AppModule } from '../../apps/api/src/app.module';

/** Starts the API with `config` (errors only in the log); `url` is http://127.0.0.1:PORT. */
export async function startApiApp(config: AppConfig): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).overrideProvider(APP_CONFIG).useValue(config).compile();
  const app = moduleRef.createNestApplication({ logger: ['error'] });
  configureApp(app);
  await app.listen(0, '127.0.0.1');
  return { app, url: await app.getUrl() };
}

export type RoleTokens = Record<'admin' | 'operator' | 'viewer', string>;

/** Logs the admin in, adds the users "operator" and "viewer" (passwords `<role>-pw`) and logs them in too. */
export async function roleTokens(app: INestApplication, adminPassword: string): Promise<RoleTokens> {
  const login = async (username: string, password: string): Promise<string> =>
    (await request(app.getHttpServer()).post('/api/auth/login').send({ username, password }).expect(200)).body.token as string;
  const tokens: RoleTokens = { admin: await login('admin', adminPassword), operator: '', viewer: '' };
  const users = app.get(DataSource).getRepository(UserEntity);
  for (const role of ['operator', 'viewer'] as const) {
    await users.save({ username: role, passwordHash: await hashPassword(`${role}-pw`, { N: 1024, r: 8, p: 1 }), role });
    tokens[role] = await login(role, `${role}-pw`);
  }
  return tokens;
}

import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { LessThan, Not, Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { APP_CONFIG, AppConfig } from '@vmkeep/config';
import { ApiTokenEntity, hashPassword, hashToken, newToken, UserEntity, verifyPassword } from '@vmkeep/persistence';
import type { AuthUser } from './auth.decorators';

export interface LoginResult {
  token: string;
  expiresAt: Date;
  user: { id: string; username: string; role: UserEntity['role'] };
}

export interface TokenView {
  id: string;
  name: string;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  createdAt: Date;
}

/** Raised for a failed login; the API answers 401 with one generic message whatever the cause. */
export class LoginFailedError extends Error {
  constructor(readonly reason: 'unknown-user' | 'wrong-password' | 'disabled') {
    super('invalid username or password');
  }
}

/** Writes lastUsedAt at most this often per token. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** Sessions (from login, expiring) and API tokens (created by users). Only SHA-256 hashes of tokens are stored. */
@Injectable()
export class AuthService {
  /** A real hash to verify against for unknown users, so both failures take the same time. */
  private dummyHash?: Promise<string>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    @InjectRepository(ApiTokenEntity) private readonly tokens: Repository<ApiTokenEntity>,
  ) {}

  async login(username: string, password: string): Promise<LoginResult> {
    const user = await this.users.findOneBy({ username });
    if (!user) {
      this.dummyHash ??= hashPassword('vmkeep-timing-equaliser');
      await verifyPassword(password, await this.dummyHash);
      throw new LoginFailedError('unknown-user');
    }
    if (!(await verifyPassword(password, user.passwordHash))) throw new LoginFailedError('wrong-password');
    if (user.disabled) throw new LoginFailedError('disabled');
    await this.tokens.delete({ userId: user.id, kind: 'session', expiresAt: LessThan(new Date()) });
    const token = newToken();
    const expiresAt = new Date(Date.now() + this.config.api.tokenTtlHours * 3600_000);
    await this.tokens.insert({ userId: user.id, name: 'login', kind: 'session', tokenHash: hashToken(token), expiresAt, lastUsedAt: null });
    return { token, expiresAt, user: { id: user.id, username: user.username, role: user.role } };
  }

  /** The user behind a bearer token, or undefined when the token is unknown, expired or its user disabled. */
  async authenticate(token: string): Promise<AuthUser | undefined> {
    const row = await this.tokens.findOne({ where: { tokenHash: hashToken(token) }, relations: { user: true } });
    if (!row?.user || row.user.disabled) return undefined;
    const now = Date.now();
    if (row.expiresAt && row.expiresAt.getTime() <= now) return undefined;
    if (!row.lastUsedAt || now - row.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      await this.tokens.update(row.id, { lastUsedAt: new Date(now) });
    }
    return { id: row.user.id, username: row.user.username, role: row.user.role, tokenId: row.id };
  }

  /** Ends the session (or revokes the API token) the request came with. */
  async logout(user: AuthUser): Promise<void> {
    await this.tokens.delete({ id: user.tokenId });
  }

  /** A new API token of the user; the value is returned once and stored only as a hash. */
  async createToken(user: AuthUser, name: string, expiresInDays?: number): Promise<TokenView & { token: string }> {
    const token = newToken();
    const expiresAt = expiresInDays ? new Date(Date.now() + expiresInDays * 86400_000) : null;
    const row = await this.tokens.save(
      this.tokens.create({ userId: user.id, name, kind: 'api', tokenHash: hashToken(token), expiresAt, lastUsedAt: null }),
    );
    return { ...tokenView(row), token };
  }

  /** API tokens of a user (their own, or any user's for an admin). */
  async listTokens(userId: string): Promise<TokenView[]> {
    const rows = await this.tokens.find({ where: { userId, kind: 'api' }, order: { createdAt: 'DESC' } });
    return rows.map(tokenView);
  }

  /** Revokes one API token of the user. */
  async deleteToken(userId: string, id: string): Promise<TokenView> {
    const row = await this.tokens.findOneBy({ id, userId, kind: 'api' });
    if (!row) throw new VmkeepError(`API token ${id} not found`, 'not_found');
    await this.tokens.delete({ id: row.id });
    return tokenView(row);
  }

  /** Ends every login session of the user, except the one given (the caller's own session when it changes its password). */
  async revokeSessions(userId: string, exceptTokenId?: string): Promise<number> {
    const result = await this.tokens.delete({ userId, kind: 'session', ...(exceptTokenId ? { id: Not(exceptTokenId) } : {}) });
    return result.affected ?? 0;
  }

  /** Changes the caller's own password after checking the current one; its other sessions end. */
  async changeOwnPassword(user: AuthUser, currentPassword: string, newPassword: string): Promise<number> {
    const row = await this.users.findOneBy({ id: user.id });
    if (!row || !(await verifyPassword(currentPassword, row.passwordHash))) {
      throw new VmkeepError('the current password is wrong', 'forbidden');
    }
    if (currentPassword === newPassword) throw new VmkeepError('newPassword must differ from the current password', 'invalid');
    await this.users.update(row.id, { passwordHash: await hashPassword(newPassword) });
    return this.revokeSessions(row.id, user.tokenId);
  }
}

function tokenView(t: ApiTokenEntity): TokenView {
  return { id: t.id, name: t.name, expiresAt: t.expiresAt, lastUsedAt: t.lastUsedAt, createdAt: t.createdAt };
}

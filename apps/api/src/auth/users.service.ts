import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { Role, VmkeepError } from '@vmkeep/contracts';
import { APP_CONFIG, AppConfig } from '@vmkeep/config';
import { hashPassword, UserEntity } from '@vmkeep/persistence';

export interface UserView {
  id: string;
  username: string;
  role: Role;
  disabled: boolean;
  createdAt: Date;
}

/** Users and the first admin. Passwords are stored as scrypt hashes and never logged. */
@Injectable()
export class UsersService implements OnApplicationBootstrap {
  private readonly logger = new Logger('Users');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.ensureFirstAdmin();
  }

  /**
   * With no user at all, creates config.admin.username with config.admin.password, or with a generated password
   * written to config.admin.passwordFile (mode 0600). Returns whether a user was created.
   */
  async ensureFirstAdmin(): Promise<boolean> {
    if ((await this.users.count()) > 0) return false;
    const { username, password, passwordFile } = this.config.admin;
    const secret = password ?? randomBytes(18).toString('base64url');
    try {
      await this.users.insert({ username, passwordHash: await hashPassword(secret), role: 'admin', disabled: false });
    } catch (err) {
      // Another process (a second API instance) created the admin first.
      if (await this.users.existsBy({ username })) return false;
      throw err;
    }
    if (password === undefined) {
      fs.mkdirSync(path.dirname(passwordFile), { recursive: true, mode: 0o700 });
      fs.writeFileSync(passwordFile, `${secret}\n`, { mode: 0o600 });
      fs.chmodSync(passwordFile, 0o600);
      this.logger.log(`created the first admin "${username}"; its password is in ${passwordFile}`);
    } else {
      this.logger.log(`created the first admin "${username}" with the configured password`);
    }
    return true;
  }

  async list(): Promise<UserView[]> {
    return (await this.users.find({ order: { username: 'ASC' } })).map(userView);
  }

  async create(username: string, password: string, role: Role): Promise<UserView> {
    if (await this.users.existsBy({ username })) {
      throw new VmkeepError(`a user named ${JSON.stringify(username)} already exists`, 'conflict');
    }
    const row = await this.users.save(this.users.create({ username, passwordHash: await hashPassword(password), role, disabled: false }));
    return userView(row);
  }

  async get(id: string): Promise<UserView> {
    return userView(await this.find(id));
  }

  /**
   * Changes role and/or disabled. One cannot disable or demote oneself, and the last enabled admin stays an
   * enabled admin. Returns the user before and after.
   */
  async update(id: string, changes: { role?: Role; disabled?: boolean }, actorId: string): Promise<{ before: UserView; after: UserView }> {
    const user = await this.find(id);
    const before = userView(user);
    const losesAdmin = user.role === 'admin' && !user.disabled && ((changes.role !== undefined && changes.role !== 'admin') || changes.disabled === true);
    if (losesAdmin && user.id === actorId) throw new VmkeepError('you cannot disable or demote your own user', 'conflict');
    if (losesAdmin && (await this.users.countBy({ role: 'admin', disabled: false })) <= 1) {
      throw new VmkeepError('the last enabled admin cannot be disabled or demoted', 'conflict');
    }
    if (changes.disabled === true && user.id === actorId) throw new VmkeepError('you cannot disable your own user', 'conflict');
    if (changes.role !== undefined) user.role = changes.role;
    if (changes.disabled !== undefined) user.disabled = changes.disabled;
    await this.users.update(user.id, { role: user.role, disabled: user.disabled });
    return { before, after: userView(user) };
  }

  /** Sets a user's password (admin reset). */
  async setPassword(id: string, password: string): Promise<UserView> {
    const user = await this.find(id);
    await this.users.update(user.id, { passwordHash: await hashPassword(password) });
    return userView(user);
  }

  /** Deletes a user (and, by cascade, its tokens). The last admin cannot be deleted, nor can one delete oneself. */
  async delete(id: string, actorId: string): Promise<UserView> {
    const user = await this.find(id);
    if (user.id === actorId) throw new VmkeepError('you cannot delete your own user', 'conflict');
    if (user.role === 'admin' && (await this.users.countBy({ role: 'admin' })) <= 1) {
      throw new VmkeepError('the last admin cannot be deleted', 'conflict');
    }
    await this.users.delete({ id });
    return userView(user);
  }

  private async find(id: string): Promise<UserEntity> {
    const user = await this.users.findOneBy({ id });
    if (!user) throw new VmkeepError(`user ${id} not found`, 'not_found');
    return user;
  }
}

function userView(u: UserEntity): UserView {
  return { id: u.id, username: u.username, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

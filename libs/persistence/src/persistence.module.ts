import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, AppConfig, ConfigError } from '@vmkeep/config';
import { dataSourceOptions } from './data-source';
import { ENTITIES } from './entities';
import { loadOrCreateSecretKey, SecretBox } from './secrets';

/**
 * Global module: the TypeORM connection for APP_CONFIG (migrations run on start), repositories of every entity
 * (`@InjectRepository(HostEntity)`), and the SecretBox holding the appliance key. Needs ConfigModule imported.
 */
@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        ...dataSourceOptions(config),
        // A database that starts after us (compose) gets a few chances; a wrong configuration fails at once.
        retryAttempts: 10,
        retryDelay: 3000,
        toRetry: (err: unknown) => !(err instanceof ConfigError),
      }),
    }),
    TypeOrmModule.forFeature(ENTITIES),
  ],
  providers: [
    {
      provide: SecretBox,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new SecretBox(loadOrCreateSecretKey(config)),
    },
  ],
  exports: [TypeOrmModule, SecretBox],
})
export class PersistenceModule {}

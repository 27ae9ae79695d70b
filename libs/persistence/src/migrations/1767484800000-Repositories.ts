import { MigrationInterface, QueryRunner, Table, TableColumn, TableIndex } from 'typeorm';

/**
 * Repositories as appliance resources (issues 4–6): the `repositories` table, and which repository a restore
 * point lives in and a policy writes to (`repositoryId`, null = the default; old points keep `repositoryPath`).
 */
export class Repositories1767484800000 implements MigrationInterface {
  readonly name = 'Repositories1767484800000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const mysql = isMysql(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'repositories',
        columns: [
          { name: 'id', type: 'varchar', length: mysql ? '36' : undefined, isPrimary: true, isGenerated: true, generationStrategy: 'uuid' },
          { name: 'name', type: 'varchar', length: '128' },
          { name: 'location', type: 'varchar', length: '1024' },
          { name: 'encrypted', type: 'boolean', default: 0 },
          { name: 'passphraseSealed', type: 'text', isNullable: true },
          { name: 's3', type: 'text', isNullable: true },
          { name: 's3SecretSealed', type: 'text', isNullable: true },
          { name: 'isDefault', type: 'boolean', default: 0 },
          { name: 'createdAt', type: 'datetime', precision: mysql ? 6 : undefined, default: mysql ? 'CURRENT_TIMESTAMP(6)' : "datetime('now')" },
        ],
        indices: [{ name: 'IDX_repositories_name', columnNames: ['name'], isUnique: true }],
      }),
      false,
      true,
      true,
    );
    await queryRunner.addColumn('restore_points', repositoryIdColumn());
    await queryRunner.createIndex(
      'restore_points',
      new TableIndex({ name: 'IDX_restore_points_repositoryId', columnNames: ['repositoryId'] }),
    );
    await queryRunner.addColumn('policies', repositoryIdColumn());
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('policies', 'repositoryId');
    await queryRunner.dropIndex('restore_points', 'IDX_restore_points_repositoryId');
    await queryRunner.dropColumn('restore_points', 'repositoryId');
    await queryRunner.dropTable('repositories', false, true, true);
  }
}

function repositoryIdColumn(): TableColumn {
  return new TableColumn({ name: 'repositoryId', type: 'varchar', length: '36', isNullable: true });
}

function isMysql(queryRunner: QueryRunner): boolean {
  const type = queryRunner.connection.driver.options.type;
  if (type === 'mysql' || type === 'mariadb') return true;
  if (type === 'better-sqlite3') return false;
  throw new Error(`Repositories migration: unsupported database type "${type}"`);
}

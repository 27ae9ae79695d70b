import { MigrationInterface, QueryRunner, Table, TableColumnOptions } from 'typeorm';

/**
 * Backup policies and their runs (issue 5). Same approach as InitialSchema: the QueryRunner Table API, with the
 * few dialect differences (timestamp defaults, int type name, id length) resolved from the driver.
 */
export class Policies1767312000000 implements MigrationInterface {
  readonly name = 'Policies1767312000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const table of tables(isMysql(queryRunner))) await queryRunner.createTable(table, false, true, true);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of tables(isMysql(queryRunner)).reverse()) await queryRunner.dropTable(table.name, false, true, true);
  }
}

function isMysql(queryRunner: QueryRunner): boolean {
  const type = queryRunner.connection.driver.options.type;
  if (type === 'mysql' || type === 'mariadb') return true;
  if (type === 'better-sqlite3') return false;
  throw new Error(`Policies migration: unsupported database type "${type}"`);
}

function tables(mysql: boolean): Table[] {
  const now = mysql ? 'CURRENT_TIMESTAMP(6)' : "datetime('now')";
  const precision = mysql ? 6 : undefined;
  const id = (): TableColumnOptions => ({
    name: 'id',
    type: 'varchar',
    length: mysql ? '36' : undefined,
    isPrimary: true,
    isGenerated: true,
    generationStrategy: 'uuid',
  });
  const varchar = (name: string, length: number, nullable = false): TableColumnOptions => ({ name, type: 'varchar', length: String(length), isNullable: nullable });
  const text = (name: string): TableColumnOptions => ({ name, type: 'text' });
  const int = (name: string, defaultValue: number): TableColumnOptions => ({ name, type: mysql ? 'int' : 'integer', default: defaultValue });
  const bool = (name: string, defaultValue: boolean): TableColumnOptions => ({ name, type: 'boolean', default: defaultValue ? 1 : 0 });
  const datetime = (name: string, nullable: boolean): TableColumnOptions => ({ name, type: 'datetime', isNullable: nullable });
  return [
    new Table({
      name: 'policies',
      columns: [
        id(),
        varchar('name', 128),
        bool('enabled', true),
        varchar('cron', 128),
        varchar('timeZone', 64),
        text('schedule'),
        varchar('windowStart', 5, true),
        varchar('windowEnd', 5, true),
        text('selection'),
        text('retention'),
        { ...varchar('quiesce', 16), default: "'try'" },
        bool('cbt', true),
        int('priority', 0),
        text('concurrency'),
        int('retries', 0),
        int('retryBackoffSeconds', 60),
        { name: 'createdAt', type: 'datetime', precision, default: now },
        { name: 'updatedAt', type: 'datetime', precision, default: now, onUpdate: mysql ? now : undefined },
      ],
      indices: [{ name: 'IDX_policies_name', columnNames: ['name'], isUnique: true }],
    }),
    new Table({
      name: 'policy_runs',
      columns: [
        id(),
        varchar('policyId', 36),
        datetime('tickAt', false),
        bool('manual', false),
        varchar('state', 16),
        text('vms'),
        text('warnings'),
        datetime('startedAt', false),
        datetime('finishedAt', true),
      ],
      indices: [{ name: 'IDX_policy_runs_policyId_tickAt', columnNames: ['policyId', 'tickAt'], isUnique: true }],
      foreignKeys: [
        {
          name: 'FK_policy_runs_policyId',
          columnNames: ['policyId'],
          referencedTableName: 'policies',
          referencedColumnNames: ['id'],
          onDelete: 'CASCADE',
          onUpdate: 'NO ACTION',
        },
      ],
    }),
  ];
}

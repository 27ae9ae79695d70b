import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/** restore_points.vmConfig (issue 6): the VM's configuration at backup time, for a full VM restore. */
export class RestorePointVmConfig1767398400000 implements MigrationInterface {
  readonly name = 'RestorePointVmConfig1767398400000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumn('restore_points', new TableColumn({ name: 'vmConfig', type: 'text', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('restore_points', 'vmConfig');
  }
}

import { Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Queue } from 'bullmq';
@Injectable() class A {}
it('loads', async () => {
  const m = await Test.createTestingModule({ providers: [A] }).compile();
  expect(m.get(A)).toBeInstanceOf(A);
  expect(typeof Queue).toBe('function');
});

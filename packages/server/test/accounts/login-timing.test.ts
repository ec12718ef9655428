import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, client, createUser, OTHER_PASSWORD, uniqueEmail } from '../support/accounts.ts';
import { backends, startTestGatehouse, type TestGatehouse } from '../support/backends.ts';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * Statistical, not a time bound: over a few hundred interleaved attempts the median response
 * time for an unknown email and for a wrong password must differ by less than 10%, or the
 * response time would tell an attacker which emails are registered.
 */
describe('login timing does not reveal whether an email is registered', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startTestGatehouse(
      backends()[backends().length - 1] as NonNullable<ReturnType<typeof backends>[0]>,
    );
  });
  after(() => gh.destroy());

  it('median times for unknown emails and wrong passwords differ by less than 10%', async () => {
    const user = await createUser(gh);
    const rounds = 150;
    const unknown: number[] = [];
    const wrong: number[] = [];
    const attempt = async (email: string, ip: string) => {
      const started = process.hrtime.bigint();
      const response = await call(gh, client(ip), 'POST', '/v1/auth/login', {
        email,
        password: OTHER_PASSWORD,
      });
      const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
      assert.equal(response.statusCode, 401);
      return elapsed;
    };
    // Warm up both paths (JIT, the dummy hash, connection pools).
    for (let i = 0; i < 10; i++) {
      await attempt(uniqueEmail('warm'), `10.9.${i}.1`);
      await attempt(user.email, `10.9.${i}.2`);
    }
    for (let i = 0; i < rounds; i++) {
      // Fresh IPs keep the throttle out of the measurement; alternate which path goes first.
      const ipA = `10.${Math.floor(i / 250)}.${i % 250}.1`;
      const ipB = `10.${Math.floor(i / 250)}.${i % 250}.2`;
      if (i % 2) {
        unknown.push(await attempt(uniqueEmail('ghost'), ipA));
        wrong.push(await attempt(user.email, ipB));
      } else {
        wrong.push(await attempt(user.email, ipB));
        unknown.push(await attempt(uniqueEmail('ghost'), ipA));
      }
    }
    const unknownMedian = median(unknown);
    const wrongMedian = median(wrong);
    const difference = Math.abs(unknownMedian - wrongMedian) / Math.max(unknownMedian, wrongMedian);
    console.log(
      `login timing: unknown email median ${unknownMedian.toFixed(2)} ms, wrong password median ${wrongMedian.toFixed(2)} ms, difference ${(difference * 100).toFixed(1)}% over ${rounds} attempts each`,
    );
    assert.ok(difference < 0.1, `medians differ by ${(difference * 100).toFixed(1)}%`);
  });
});

import { describe, expect, it } from 'vitest';
import { brazilianMobileVariants } from '../../src/delivery/brazil-phone.ts';

describe('brazilianMobileVariants', () => {
  it.each([
    ['13-digit mobile → also the old 12-digit form', '+5511987654321', ['+5511987654321', '+551187654321']],
    ['12-digit old mobile → also the 13-digit form', '+551187654321', ['+551187654321', '+5511987654321']],
    ['old mobile starting with 6', '+552161234567', ['+552161234567', '+5521961234567']],
    ['12-digit landline (starts with 3) stays alone', '+551133334444', ['+551133334444']],
    ['13-digit whose last eight start with 3 never had an old form', '+5511933334444', ['+5511933334444']],
    ['13-digit not starting with 9 is left alone', '+5511887654321', ['+5511887654321']],
    ['area code with a zero is not Brazilian numbering', '+5501987654321', ['+5501987654321']],
    ['another country', '+14155550123', ['+14155550123']],
    ['Portugal (351) is not Brazil (55)', '+351912345678', ['+351912345678']],
    ['too long', '+55119876543210', ['+55119876543210']],
    ['too short', '+5511876543', ['+5511876543']],
    ['bare digits are not E.164', '5511987654321', ['5511987654321']],
  ])('%s', (_name, input, expected) => {
    expect(brazilianMobileVariants(input)).toEqual(expected);
  });

  it('the forms map onto each other', () => {
    for (const phone of ['+5511987654321', '+551187654321', '+5585999990000', '+558599990000']) {
      const [, other] = brazilianMobileVariants(phone);
      expect(other).toBeDefined();
      expect(brazilianMobileVariants(other as string)).toEqual([other, phone]);
    }
  });
});

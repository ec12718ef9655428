import type { Mailer } from '../mail/mailer.ts';
import {
  passwordChangedMail,
  passwordResetMail,
  registrationAttemptMail,
  verificationMail,
} from '../mail/templates.ts';
import type { AccountMail } from './identity-service.ts';

const APP_NAME = 'Gatehouse';

/**
 * Renders the account mails and hands them to the configured mailer (SMTP or the dev outbox).
 * Links carry a single-use token and open the pages of src/identity/account-pages.ts.
 */
export function accountMail(mailer: Mailer): AccountMail {
  return {
    verifyEmail: (to, link) => mailer.send({ to, ...verificationMail({ link, appName: APP_NAME }) }),
    resetPassword: (to, link) => mailer.send({ to, ...passwordResetMail({ link, appName: APP_NAME }) }),
    accountExists: (to) => mailer.send({ to, ...registrationAttemptMail({ appName: APP_NAME }) }),
    passwordChanged: (to) => mailer.send({ to, ...passwordChangedMail({ appName: APP_NAME }) }),
  };
}

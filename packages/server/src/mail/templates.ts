/**
 * The account mails, as plain text plus a simple HTML alternative. Every interpolated value is
 * HTML-escaped, and links must be http(s). No mail repeats a user-supplied name: the
 * "registration attempt" mail goes to an address someone else typed in.
 */
export interface MailContent {
  subject: string;
  text: string;
  html: string;
}

export const RESET_LINK_LIFETIME_MINUTES = 30;

export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** Refuses anything but an absolute http(s) URL, so no javascript: or relative link reaches a mail. */
function checkedLink(link: string): string {
  let parsed: URL;
  try {
    parsed = new URL(link);
  } catch {
    throw new TypeError('A mail link must be an absolute URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new TypeError('A mail link must be an http(s) URL');
  }
  return link;
}

/** A paragraph: plain text for the text body, and escaped text (or a link) for the HTML body. */
type Block = string | { link: string; label: string };

function render(subject: string, blocks: Block[]): MailContent {
  const text = blocks.map((block) => (typeof block === 'string' ? block : block.link)).join('\n\n');
  const paragraphs = blocks.map((block) => {
    if (typeof block === 'string') return `<p>${escapeHtml(block)}</p>`;
    const href = escapeHtml(checkedLink(block.link));
    return (
      `<p><a href="${href}" style="display:inline-block;padding:10px 16px;background:#1f4ed8;color:#ffffff;` +
      `text-decoration:none;border-radius:4px">${escapeHtml(block.label)}</a></p>` +
      `<p style="font-size:13px;color:#555555">Or copy this address into your browser:<br>${href}</p>`
    );
  });
  const html = [
    '<!doctype html>',
    `<html><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>`,
    '<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#111111">',
    ...paragraphs,
    '</body></html>',
  ].join('\n');
  return { subject, text: `${text}\n`, html };
}

function linkBlock(link: string, label: string): Block {
  checkedLink(link);
  return { link, label };
}

/** Email verification: the link confirms the address. */
export function verificationMail(input: { link: string; appName: string }): MailContent {
  return render(`Confirm your email address for ${input.appName}`, [
    'Hello,',
    `Please confirm the email address of your ${input.appName} account by opening this link:`,
    linkBlock(input.link, 'Confirm email address'),
    'The link works once. If you did not create an account, you can ignore this email.',
  ]);
}

/** Password reset: the link lets the holder choose a new password (within 30 minutes by default). */
export function passwordResetMail(input: {
  link: string;
  appName: string;
  expiresInMinutes?: number;
}): MailContent {
  return render(`Reset your ${input.appName} password`, [
    'Hello,',
    `Someone asked to reset the password of your ${input.appName} account. To choose a new password, open this link:`,
    linkBlock(input.link, 'Choose a new password'),
    `The link works once and expires in ${input.expiresInMinutes ?? RESET_LINK_LIFETIME_MINUTES} minutes.`,
    'If you did not ask for this, you can ignore this email: your password stays as it is.',
  ]);
}

/**
 * Sent instead of a verification mail when someone signs up with an address that already has an
 * account, so the sign-up response does not reveal which addresses are registered.
 */
export function registrationAttemptMail(input: {
  appName: string;
  loginLink?: string;
  resetLink?: string;
}): MailContent {
  const blocks: Block[] = [
    'Hello,',
    `Someone tried to create a new ${input.appName} account with this email address, but an account with this address already exists.`,
  ];
  if (input.loginLink) {
    blocks.push('If it was you, log in to your existing account instead:');
    blocks.push(linkBlock(input.loginLink, 'Log in'));
  } else {
    blocks.push('If it was you, log in to your existing account instead.');
  }
  if (input.resetLink) {
    blocks.push('If you forgot your password, you can reset it:');
    blocks.push(linkBlock(input.resetLink, 'Reset password'));
  } else {
    blocks.push('If you forgot your password, you can reset it from the login page.');
  }
  blocks.push('If it was not you, you can ignore this email: nothing about your account has changed.');
  return render(`Sign-up attempt with your email address at ${input.appName}`, blocks);
}

/** Notice after a password change, so an owner learns of a change they did not make. */
export function passwordChangedMail(input: { appName: string; resetLink?: string }): MailContent {
  const blocks: Block[] = [
    'Hello,',
    `The password of your ${input.appName} account was just changed. If you made this change, there is nothing else to do.`,
  ];
  if (input.resetLink) {
    blocks.push('If you did not, reset your password right away and contact your administrator:');
    blocks.push(linkBlock(input.resetLink, 'Reset password'));
  } else {
    blocks.push('If you did not, reset your password right away and contact your administrator.');
  }
  return render(`Your ${input.appName} password was changed`, blocks);
}

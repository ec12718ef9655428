import Bowser from 'bowser';

/** A human label for a session's device ("Firefox on Linux"), from its user agent. */
export function describeDevice(userAgent: string | null): string {
  if (!userAgent) return 'Unknown device';
  const parsed = Bowser.parse(userAgent);
  const browser = parsed.browser.name;
  const os = parsed.os.name;
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || userAgent.split(/[\s/]/)[0] || 'Unknown device';
}

/** An address as the host part of a URL or `host:port`: an IPv6 address in brackets. */
export function hostText(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

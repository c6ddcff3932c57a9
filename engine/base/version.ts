/** The tool's version, shown by --version, in reports and in the About box. */
export const VERSION = '0.1.0';

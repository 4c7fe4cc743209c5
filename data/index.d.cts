/** The folder of the shipped external test sets. */
export declare const dir: string;

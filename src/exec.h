/*-------------------------------------------------------------------------
 *
 * exec.h
 *	  The worker's transactions and statements (exec.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_EXEC_H
#define BULKOPS_EXEC_H

extern void bulkops_begin_tx(const char *activity);
extern void bulkops_commit_tx(void);
extern void bulkops_abort_tx(MemoryContext cxt);
extern void bulkops_discard_tx(MemoryContext cxt);
extern bool bulkops_in_subxact(void (*fn) (void *arg), void *arg);
extern int	bulkops_exec(const char *sql, int nargs, Oid *types, Datum *values,
						 const char *nulls, bool read_only, int expect);
extern int	bulkops_exec_built(const char *sql, int nargs, Oid *types,
							   Datum *values, const char *nulls,
							   bool read_only, int expect);

#endif							/* BULKOPS_EXEC_H */

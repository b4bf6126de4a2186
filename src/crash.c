/*-------------------------------------------------------------------------
 *
 * crash.c
 *	  Test-only crash injection: the setting bulkops.crash_at names a step
 *	  (and optionally which pass through it) at which the process reaching
 *	  it dies as if by kill -9.
 *
 * The TAP tests (test/t/010_crash_points.pl) use it to prove that a crash at
 * any step leaves every row with exactly one receipt and sends nothing
 * twice that is not safe to repeat.  Each step calls bulkops_crash_point()
 * with its name; with the setting empty that is one test of a bool.
 *
 * The process dies by SIGKILL to itself, not abort() or exit(): the
 * postmaster must see exactly what it sees after kill -9 (a child killed
 * by a signal, every process reset, crash recovery), with no core file,
 * no exit callbacks and no transaction abort to soften it.
 *
 * A point fires at most once per data directory: the process about to die
 * first creates $PGDATA/bulkops_crash_fired (O_EXCL), and no point fires
 * while that file exists.  So the processes started again after the crash
 * pass the point unharmed even while the setting is still in force, and a
 * test can clear the setting at leisure; deleting the file re-arms it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "bulkops.h"

#define CRASH_MARKER "bulkops_crash_fired"

/* every call site's name; a setting naming anything else is refused */
static const char *const crash_points[] = {
	"enqueue",					/* enqueueing backend, after a batch is
								 * written */
	"enqueue_commit",			/* enqueueing backend, after its commit */
	"recover",					/* worker start, resuming batches, before
								 * commit */
	"claim",					/* after a claim committed, nothing sent */
	"submit",					/* a submit is about to be handed to the
								 * network */
	"submit_answered",			/* a submit's answer arrived, nothing recorded */
	"step_saved",				/* a new step / remote id was committed */
	"poll",						/* a request at a later step is about to go */
	"fetch",					/* part of a later step's answer has arrived */
	"poll_answered",			/* a later step's answer arrived, nothing
								 * recorded */
	"receipts",					/* receipts written, transaction open */
	"finish_job",				/* the job was made final, transaction open */
	"batch_done",				/* a finished batch committed, still held */
	NULL
};

typedef struct CrashSpec
{
	char		point[32];
	int			pass;
} CrashSpec;

static char *crash_at_setting = NULL;
bool		bulkops_crash_armed = false;
static CrashSpec crash_spec;
static int	crash_passes = 0;

static bool
check_crash_at(char **newval, void **extra, GucSource source)
{
	CrashSpec  *spec;
	const char *colon;
	size_t		len;
	int			i;

	/* extra must be malloc'd: GUC frees it with free() */
	spec = malloc(sizeof(CrashSpec));
	if (spec == NULL)
		return false;
	memset(spec, 0, sizeof(CrashSpec));
	spec->pass = 1;
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		*extra = spec;
		return true;
	}

	colon = strchr(*newval, ':');
	len = colon ? (size_t) (colon - *newval) : strlen(*newval);
	if (colon)
	{
		char	   *end;
		long		n;

		errno = 0;
		n = strtol(colon + 1, &end, 10);
		if (errno != 0 || end == colon + 1 || *end != '\0' || n < 1 || n > INT_MAX)
		{
			GUC_check_errdetail("The pass after \":\" must be a positive integer.");
			free(spec);
			return false;
		}
		spec->pass = (int) n;
	}
	for (i = 0; crash_points[i] != NULL; i++)
		if (strlen(crash_points[i]) == len &&
			strncmp(crash_points[i], *newval, len) == 0)
			break;
	if (crash_points[i] == NULL)
	{
		GUC_check_errdetail("\"%.*s\" is not a bulkops crash point.", (int) len, *newval);
		free(spec);
		return false;
	}
	strlcpy(spec->point, crash_points[i], sizeof(spec->point));
	*extra = spec;
	return true;
}

static void
assign_crash_at(const char *newval, void *extra)
{
	crash_spec = *(CrashSpec *) extra;
	crash_passes = 0;
	bulkops_crash_armed = crash_spec.point[0] != '\0';

	/* lets a test know the worker, not only new sessions, has taken it */
	if (bulkops_crash_armed && MyBackendType == B_BG_WORKER &&
		MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_type, "bulkops worker") == 0)
		ereport(LOG,
				(errmsg("bulkops worker: crash point \"%s\" armed", newval)));
}

void
bulkops_define_crash_setting(void)
{
	DefineCustomStringVariable("bulkops.crash_at",
							   "For tests only: the step at which a bulkops process kills itself.",
							   "\"point\" or \"point:N\" (the N-th pass); empty for none.",
							   &crash_at_setting, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   check_crash_at, assign_crash_at, NULL);
}

/* The step named point is reached: die here if the setting says so. */
void
bulkops_crash_reached(const char *point)
{
	char		path[MAXPGPATH];
	char		note[128];
	int			fd;
	int			len;

	if (strcmp(point, crash_spec.point) != 0 || ++crash_passes != crash_spec.pass)
		return;

	snprintf(path, sizeof(path), "%s/%s", DataDir, CRASH_MARKER);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR);
	if (fd < 0)
		return;					/* fired before: the marker says so */
	len = snprintf(note, sizeof(note), "%s:%d %d\n", point, crash_passes, MyProcPid);
	if (write(fd, note, len) != len)
	{
		/* the marker exists, which is all that counts */
	}
	close(fd);

	ereport(LOG,
			(errmsg("bulkops: crash point \"%s\" reached (pass %d): process %d kills itself",
					point, crash_passes, MyProcPid)));
	kill(MyProcPid, SIGKILL);
	abort();					/* not reached */
}

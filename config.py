# Distributed-Something settings. Plain values only: edit, save, run.
# Every knob is described in documentation/configuration.md; knobs you delete
# take the defaults listed there. True/False may also be written 'True'/'False'.

# ---- Your run -------------------------------------------------------------
APP_NAME = 'ExampleProject'              # names the queue, service, alarms, logs and dashboard
DOCKERHUB_TAG = 'yourname/distributed-something:latest'  # worker image ECS runs (see worker/)

# The tool command each job runs. {name} is replaced by the job's value for
# "name" (shell-quoted); {input_dir}, {output_dir}, {job_name} are built in.
COMMAND = 'python3 {input_dir}/summarize.py {input_dir}/{well}.csv {output_dir}/{well}.json'

# ---- AWS account ----------------------------------------------------------
AWS_REGION = 'us-east-1'                 # region of the queue, cluster, fleet and bucket
AWS_PROFILE = 'default'                  # profile in ~/.aws/credentials to use
SSH_KEY_NAME = 'your-key-file.pem'       # key pair for SSH into machines (also named in the fleet file)
AWS_BUCKET = 'your-bucket-name'          # bucket with inputs; outputs and logs go here too
TASK_ROLE_ARN = ''                       # IAM role for worker containers; '' = the machines' instance role

# ---- The cluster ----------------------------------------------------------
ECS_CLUSTER = 'default'                  # ECS cluster; a cluster other than 'default' is deleted when unused
CLUSTER_MACHINES = 2                     # most machines to run at once; startCluster asks for fewer if the queued jobs fill fewer
TASKS_PER_MACHINE = 1                    # worker containers (ECS tasks) per machine
MACHINE_TYPE = ['m5.xlarge']             # instance types; one per launch specification, else every type in every one
MACHINE_PRICE = 0.10                     # the most you pay per machine-hour (USD, spot price cap)
EBS_VOL_SIZE = 30                        # GB of disk per machine; at least the AMI's root snapshot size (30 for current ECS-optimized AMIs)
ASSIGN_IP = 'True'                       # True: the fleet file decides; False: no public IP, whatever it says

# ---- Each worker container ------------------------------------------------
DOCKER_CORES = 2                         # copies of the worker (jobs at once) per container
CPU_SHARES = DOCKER_CORES * 1024         # ECS CPU units per container (1024 = 1 vCPU)
MEMORY = 7000                            # MB of memory per container
SECONDS_TO_START = 0                     # seconds between starting the copies in one container

# ---- The job queue --------------------------------------------------------
SQS_QUEUE_NAME = APP_NAME + 'Queue'      # job queue
SQS_MESSAGE_VISIBILITY = 10 * 60         # seconds a job is hidden from others; the worker renews it while it runs
SQS_DEAD_LETTER_QUEUE = APP_NAME + 'DeadMessages'  # where jobs go after JOB_RETRIES failed tries (name or ARN)
JOB_RETRIES = 3                          # failures of a job's tool before it goes to the dead-letter queue (interruptions don't count)

# ---- Logs, monitoring -----------------------------------------------------
LOG_GROUP_NAME = APP_NAME                # CloudWatch log group; one stream per job
MONITOR_TIME = 60                        # seconds between the monitor's looks; once no job is left to hand out, idle machines end at the next look
AUTO_MONITOR = 'True'                    # True: the run watches and removes itself on AWS (a Lambda function every minute); False: run monitor yourself
CREATE_DASHBOARD = 'True'                # build a CloudWatch dashboard for the run
CLEAN_DASHBOARD = 'True'                 # delete that dashboard when the run ends

# ---- Skip jobs whose outputs already exist --------------------------------
CHECK_IF_DONE_BOOL = 'False'             # True: a job whose output prefix looks finished is skipped
EXPECTED_NUMBER_FILES = 1                # ...finished means at least this many output files
MIN_FILE_SIZE_BYTES = 1                  # ...each at least this big
NECESSARY_STRING = ''                    # ...and one output key containing this text ('' = any)

# ---- Your app's own settings ----------------------------------------------
# Other names in capitals (a DS-based app's knobs, e.g. Distributed-CellProfiler's
# USE_PLUGINS) go into the worker's environment as str(value). Never put keys
# here: see documentation/from_ds_apps.md.

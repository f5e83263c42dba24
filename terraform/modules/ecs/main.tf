data "aws_region" "current" {}

locals {
  # Fargate's valid cpu -> memory (MiB) combinations.
  fargate_memory = {
    "256"   = [512, 1024, 2048]
    "512"   = [for gb in range(1, 5) : gb * 1024]
    "1024"  = [for gb in range(2, 9) : gb * 1024]
    "2048"  = [for gb in range(4, 17) : gb * 1024]
    "4096"  = [for gb in range(8, 31) : gb * 1024]
    "8192"  = [for gb in range(16, 61, 4) : gb * 1024]
    "16384" = [for gb in range(32, 121, 8) : gb * 1024]
  }

  # Sorted by name: ECS hands the list back in this order, so plans stay clean.
  environment = [for name in sort(keys(var.environment)) : { name = name, value = var.environment[name] }]

  container = {
    name                   = var.container_name
    image                  = var.image
    essential              = true
    user                   = var.container_user
    privileged             = false
    readonlyRootFilesystem = true
    environment            = local.environment
    # On a stop (a deploy, a person, Fargate maintenance) ECS sends SIGTERM and SIGKILLs after this
    # many seconds: the jobs' graceful stop must finish its summary, ledger and mail inside it.
    stopTimeout = var.stop_timeout_seconds
    # The root filesystem is read-only; /tmp is the task's ephemeral storage. The image declares
    # VOLUME /tmp (mode 1777), which makes ECS fill this volume from the image, mode included; an
    # undeclared path would get an empty root-owned 0755 volume that uid 10001 cannot write.
    mountPoints = [
      {
        sourceVolume  = "tmp"
        containerPath = "/tmp"
        readOnly      = false
      },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.this.name
        "awslogs-region"        = data.aws_region.current.name
        "awslogs-stream-prefix" = "ecs"
      }
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.cluster_name

  setting {
    name  = "containerInsights"
    value = var.container_insights
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 90 days): these are operational logs, the invoices of record live in QuickBooks, and keeping customer names in logs longer than needed is not wanted. Raise log_retention_days where policy requires a year.
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with service-managed keys; the jobs mask every secret before logging (integrations.logging), so a customer managed key would add a key policy to run for no gain.
  name              = var.log_group_name
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn
  container_definitions    = jsonencode([local.container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # No host path on Fargate: an empty volume is task-local ephemeral storage.
  volume {
    name = "tmp"
  }

  tags = var.tags

  lifecycle {
    # Register the new revision before the old one is deregistered, so the schedules never
    # point at an inactive revision.
    create_before_destroy = true

    precondition {
      condition     = contains(lookup(local.fargate_memory, tostring(var.cpu), []), var.memory)
      error_message = "Fargate does not offer ${var.cpu} CPU units with ${var.memory} MiB. With 256 CPU use 512, 1024 or 2048 MiB; see the Fargate task size table for the others."
    }
  }
}

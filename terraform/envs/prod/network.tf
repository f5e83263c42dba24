# The task's network. The jobs call QBO, Microsoft Graph, ClickUp and Robocorp on the internet, so
# the subnets need a route out: a NAT gateway (private subnets, assign_public_ip = false) or an
# internet gateway with a public IP on the task (public subnets, assign_public_ip = true). VPC
# endpoints alone reach AWS services only (ECR, logs, Secrets Manager, DynamoDB), never the four APIs.
#
# Security groups: give your own (security_group_ids) or let the stack make one from vpc_id that
# allows outbound HTTPS (443) only and no inbound. DNS needs no rule: security groups do not filter
# traffic to the VPC's Amazon-provided resolver.
resource "aws_security_group" "task" {
  #checkov:skip=CKV2_AWS_5:The group is attached to the tasks through the EventBridge Scheduler targets' network configuration (module.schedule, local.security_group_ids), which checkov does not follow.
  count       = var.vpc_id == null ? 0 : 1
  name        = "${local.name}-task"
  description = "${local.name} tasks: outbound HTTPS only (QBO, Graph, ClickUp, Robocorp, AWS APIs), no inbound."
  vpc_id      = var.vpc_id

  egress {
    description      = "HTTPS to the APIs the jobs call (and AWS endpoints)"
    from_port        = 443
    to_port          = 443
    protocol         = "tcp"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }

  tags = { Name = "${local.name}-task" }
}

locals {
  security_group_ids = concat(aws_security_group.task[*].id, var.security_group_ids)
}

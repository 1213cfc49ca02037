"""The deploy rehearsal: the synthesized stack stood up in moto, run end to end under its own roles.

`python -m rehearsal` (`make rehearse`) synthesizes the CDK app, creates the stack's data resources in moto
from the template, runs the api, sender, stream reporter, reporter and bouncer handlers in-process with
Lambda-shaped events (SQS, the messages table's DynamoDB Stream, schedules), each under the credentials of a
role carrying exactly its synthesized statements (IAM enforced by moto for the actions, by rehearsal/policy.py
for the resources), and drives one message from add-messages through a real SMTP server to a "sent" delivery
report, posted from the stream, on a real HTTPS endpoint. See docs/deploy.md, "The deploy rehearsal".
Not part of the Lambda bundle (the code asset holds functions/ and mailproxy/ only).
"""
